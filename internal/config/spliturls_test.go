package config

import (
	"slices"
	"testing"
)

func TestSplitURLs(t *testing.T) {
	for in, want := range map[string][]string{
		"nats://n1:4222":                                 {"nats://n1:4222"},
		"nats://n1:4222,nats://n2:4222":                  {"nats://n1:4222", "nats://n2:4222"},
		" nats://n1:4222 , nats://n2:4222,,nats://n3:1 ": {"nats://n1:4222", "nats://n2:4222", "nats://n3:1"},
		"": nil,
	} {
		if got := SplitURLs(in); !slices.Equal(got, want) {
			t.Errorf("SplitURLs(%q) = %q, want %q", in, got, want)
		}
	}
}
