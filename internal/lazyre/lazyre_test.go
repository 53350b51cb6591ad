package lazyre

import (
	"sync"
	"testing"
)

func TestRegexpCompilesOnceOnFirstUse(t *testing.T) {
	r := New(`^(a+)(b*)$`)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !r.MatchString("aab") || r.MatchString("ba") {
				t.Error("wrong match")
			}
		}()
	}
	wg.Wait()
	if r.Compiled() != r.Compiled() {
		t.Fatal("compiled twice")
	}
	if m := r.FindStringSubmatch("aabb"); len(m) != 3 || m[1] != "aa" || m[2] != "bb" {
		t.Fatalf("submatch %q", m)
	}
	if got := New(`b`).ReplaceAllString("abc", "x"); got != "axc" {
		t.Fatalf("replace %q", got)
	}
	if got := New(`[ab]`).ReplaceAllStringFunc("abc", func(string) string { return "-" }); got != "--c" {
		t.Fatalf("replace func %q", got)
	}
}

func TestInvalidPatternPanicsOnFirstUse(t *testing.T) {
	r := New(`(`) // no panic here
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	r.MatchString("x")
}
