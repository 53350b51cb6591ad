package audit

import "testing"

func benchChain(b *testing.B, l *Log) {
	l.Identity, l.Signer, l.CheckpointEvery = "web1", newHostKey(b), 1000
}
