package audit

import (
	"bytes"
	"testing"
)

// FuzzVerify: Verify reads lines a broker user may have written; no input
// makes it panic, and a finding always has a kind and names a place.
func FuzzVerify(f *testing.F) {
	key := newHostKey(f)
	var buf bytes.Buffer
	l := New(&buf)
	l.Identity, l.Signer, l.CheckpointEvery = "web1", key, 2
	write(f, l, 4, 0)
	f.Add(buf.Bytes())
	f.Add([]byte(`{"seq":1,"prev":"","identity":"web1","decision":"checkpoint","checkpoint":{"seq":0,"hash":"","sig":"!!"}}` + "\n"))
	f.Add([]byte(`{"seq":18446744073709551615,"prev":"x","identity":"web1"}` + "\n" + `{"seq":0}`))
	kinds := map[string]bool{FindingEdited: true, FindingDeleted: true, FindingReordered: true, FindingTruncated: true, FindingForged: true, FindingUnknown: true}
	f.Fuzz(func(t *testing.T, data []byte) {
		rep := Verify(FileLines(data, "f"), VerifyOptions{HostKey: keysOf("web1", key), FromStart: true})
		for _, fd := range rep.Findings {
			if !kinds[fd.Kind] || fd.Where == "" {
				t.Fatalf("finding %+v", fd)
			}
		}
	})
}
