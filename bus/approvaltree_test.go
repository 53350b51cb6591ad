package bus

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/internal/keys/keytest"
)

// treePlan is a plan of one update step on n hosts and one broadcast.
func treePlan(n int) *ApprovalPlan {
	var hosts []string
	for i := 1; i <= n; i++ {
		hosts = append(hosts, fmt.Sprintf("web%04d.prod.example.com", i))
	}
	return &ApprovalPlan{Workflow: "deploy", App: "shop", Version: "2.0.0", Env: "prod", Batches: [][]string{hosts},
		Steps: []PlanStep{
			{Name: "update", Agent: "package", Action: "update", Params: map[string]any{"package": "shop", "version": "2.0.0", "retries": 3}, Hosts: hosts},
			{Name: "drain", Agent: "haproxy", Action: "drain", Params: map[string]any{"backend": "shop"}, Filter: Filter{Agent: []string{"haproxy"}, Class: []string{"lb"}}},
		}}
}

// wireProof is the proof as a host decodes it from a request.
func wireProof(t testing.TB, p *LeafProof) *LeafProof {
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	var out LeafProof
	if err := dec.Decode(&out); err != nil {
		t.Fatal(err)
	}
	return &out
}

// The tree's hashing is RFC 6962's: the roots of the certificate
// transparency test vectors (the first 1 to 8 of its leaves).
func TestPlanTreeRFC6962Vectors(t *testing.T) {
	leaves := []string{"", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"}
	roots := []string{
		"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
		"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
		"aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
		"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
		"4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
		"76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
		"ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
		"5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
	}
	for n := 1; n <= len(leaves); n++ {
		tr := &PlanTree{memo: map[[2]int][sha256.Size]byte{}}
		for _, l := range leaves[:n] {
			b, _ := hex.DecodeString(l)
			tr.leaves = append(tr.leaves, b)
			tr.hashes = append(tr.hashes, leafHash(b))
		}
		got := tr.subtree(0, n)
		if hex.EncodeToString(got[:]) != roots[n-1] {
			t.Errorf("root of %d leaves %x, want %s", n, got, roots[n-1])
		}
	}
}

// Every leaf of trees of 1 to 70 leaves proves, through the JSON a host
// decodes; a proof at another index, cut short, made longer, with a hash
// flipped or for an edited leaf does not.
func TestPlanTreeProofs(t *testing.T) {
	for n := 0; n <= 69; n++ {
		plan := treePlan(n)
		if n == 0 {
			plan.Steps = plan.Steps[1:]
		}
		tr, err := NewPlanTree(plan)
		if err != nil {
			t.Fatal(err)
		}
		root := tr.Root()
		if root.Leaves != n+1 {
			t.Fatalf("%d hosts: %d leaves, want %d", n, root.Leaves, n+1)
		}
		for i, b := range tr.leaves {
			var l PlanLeaf
			if err := decodeLeaf(b, &l); err != nil {
				t.Fatal(err)
			}
			p := tr.Prove(l)
			if p == nil || p.Index != i {
				t.Fatalf("leaf %d of %d: proof %+v", i, root.Leaves, p)
			}
			if err := wireProof(t, p).Verify(root); err != nil {
				t.Fatalf("leaf %d of %d: %v", i, root.Leaves, err)
			}
			bad := []*LeafProof{}
			if root.Leaves > 1 {
				other := *wireProof(t, p)
				other.Index = (i + 1) % root.Leaves
				bad = append(bad, &other)
				short := *wireProof(t, p)
				short.Path = short.Path[:len(short.Path)-1]
				bad = append(bad, &short)
				flipped := wireProof(t, p)
				flipped.Path[0][3] ^= 1
				bad = append(bad, flipped)
			}
			long := *wireProof(t, p)
			long.Path = append(long.Path, make([]byte, sha256.Size))
			edited := wireProof(t, p)
			edited.Leaf.Params = map[string]any{"package": "shop", "version": "6.6.6"}
			bad = append(bad, &long, edited)
			for j, q := range bad {
				if err := q.Verify(root); err == nil {
					t.Fatalf("leaf %d of %d: bad proof %d verifies", i, root.Leaves, j)
				}
			}
		}
	}
}

// A subject's root must be its plan's: an approver signs only the root of
// the plan shown, and the digest is the header's, with or without the
// plan.
func TestPlanTreeSubject(t *testing.T) {
	s := &ApprovalSubject{Collective: "c", Requester: "SHA256:x", Reason: "r", Expires: time.Now().Add(time.Hour).UnixMilli()}
	if err := s.SetPlan(treePlan(5)); err != nil {
		t.Fatal(err)
	}
	if s.Kind != SubjectPlanTree || s.Root.Leaves != 6 {
		t.Fatalf("subject %+v", s)
	}
	d1, err := SubjectDigest(s)
	if err != nil {
		t.Fatal(err)
	}
	h := s.Header()
	if err := h.Check(); err != nil {
		t.Fatal(err)
	}
	if d2, _ := SubjectDigest(&h); d1 != d2 {
		t.Fatalf("digest with the plan %s, without %s", d1, d2)
	}
	// Batches shown in another order than approved: refused.
	s.Plan.Batches = [][]string{s.Plan.Batches[0][1:], s.Plan.Batches[0][:1]}
	if err := s.Check(); err == nil || !strings.Contains(err.Error(), "does not have the approved root") {
		t.Fatalf("batches in another order: %v", err)
	}
	s.Plan.Batches = treePlan(5).Batches
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	// The plan shown differs from the root: refused before signing.
	s.Plan.Steps[0].Hosts = s.Plan.Steps[0].Hosts[1:]
	if err := s.Check(); err == nil || !strings.Contains(err.Error(), "does not have the approved root") {
		t.Fatalf("a plan that is not the root's: %v", err)
	}
	if _, err := SignApproval(keytest.Signer(t), "carol", s, time.Now(), time.Now().Add(time.Hour)); err == nil {
		t.Fatal("signed an approval of a root the plan shown does not have")
	}
	// A broadcast sent to its hosts by name proves with its filter leaf;
	// a call outside the plan has no proof.
	tr, _ := NewPlanTree(treePlan(5))
	if p := tr.ProveCall("haproxy", "drain", map[string]any{"backend": "shop"}, []string{"lb1", "lb2"}, Filter{}); p == nil || p.Leaf.Filter.IsZero() {
		t.Fatalf("named broadcast: %+v", p)
	}
	if p := tr.ProveCall("package", "update", map[string]any{"package": "shop", "version": "2.0.1", "retries": 3}, []string{"web0001.prod.example.com"}, Filter{}); p != nil {
		t.Fatalf("a call outside the plan proved: %+v", p)
	}
}

// FuzzLeafProof feeds arbitrary JSON to the step proof a host decodes
// from a request, against a real plan's root: it never panics; whatever
// verifies is a leaf of that plan at its index; and a decoded proof
// survives a JSON round trip unchanged.
func FuzzLeafProof(f *testing.F) {
	tr, err := NewPlanTree(treePlan(12))
	if err != nil {
		f.Fatal(err)
	}
	root := tr.Root()
	for i := range tr.leaves {
		var l PlanLeaf
		if err := decodeLeaf(tr.leaves[i], &l); err != nil {
			f.Fatal(err)
		}
		b, _ := json.Marshal(tr.Prove(l))
		f.Add(b)
	}
	f.Add([]byte(`{"leaf":{"agent":"package","action":"update"},"index":-1,"path":[]}`))
	f.Add([]byte(`{"leaf":{"agent":"a","action":"b","params":{"n":1e400}},"index":9007199254740993,"path":["AA=="]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		dec.DisallowUnknownFields()
		var p LeafProof
		if dec.Decode(&p) != nil {
			return
		}
		if p.Verify(root) == nil {
			enc, err := encodeLeaf(&p.Leaf)
			if err != nil || p.Index >= len(tr.leaves) || !bytes.Equal(enc, tr.leaves[p.Index]) {
				t.Fatalf("a proof verifies for a leaf that is not the plan's leaf %d: %s", p.Index, enc)
			}
		}
		again, err := json.Marshal(&p)
		if err != nil {
			return // a number JSON cannot hold again: refused by the request decoder's own checks
		}
		dec = json.NewDecoder(bytes.NewReader(again))
		dec.UseNumber()
		var q LeafProof
		if err := dec.Decode(&q); err != nil {
			t.Fatalf("re-decode %s: %v", again, err)
		}
		if third, _ := json.Marshal(&q); !bytes.Equal(third, again) {
			t.Fatalf("round trip changed the proof:\n%s\n%s", again, third)
		}
	})
}

// BenchmarkVerifyLeafProof is what a host spends on a step's proof in the
// plan of a 1,000-host deploy (10 calls per host: 10,001 leaves).
func BenchmarkVerifyLeafProof(b *testing.B) {
	plan := treePlan(1000)
	steps := plan.Steps
	for i := 1; i < 10; i++ {
		st := steps[0]
		st.Params = map[string]any{"package": "shop", "version": "2.0.0", "step": i}
		plan.Steps = append(plan.Steps, st)
	}
	tr, err := NewPlanTree(plan)
	if err != nil {
		b.Fatal(err)
	}
	root := tr.Root()
	p := wireProof(b, tr.Prove(PlanLeaf{Agent: "package", Action: "update", Params: steps[0].Params, Host: "web0500.prod.example.com"}))
	b.ResetTimer()
	for range b.N {
		if err := p.Verify(root); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(p.Path)), "hashes")
}

// BenchmarkHostPlanCheck is the host's check of a plan-approved step
// before the approvals' signatures: the subject covers the request (for a
// tree, the proof) and its digest, with the whole plan carried (kind
// plan) and with the tree, for plans of 10 calls per host.
func BenchmarkHostPlanCheck(b *testing.B) {
	for _, n := range []int{100, 300, 1000} {
		plan := treePlan(n)
		base := plan.Steps[0]
		for i := 1; i < 10; i++ {
			st := base
			st.Params = map[string]any{"package": "shop", "version": "2.0.0", "step": i}
			plan.Steps = append(plan.Steps, st)
		}
		host := "web0050.prod.example.com"
		node := &Node{Identity: host}
		req := &Request{Collective: "c", Agent: "package", Action: "update", Params: base.Params, Targets: []string{host}, Created: time.Now().UnixMilli()}
		s := ApprovalSubject{Collective: "c", Requester: "SHA256:x", Reason: "r", Expires: time.Now().Add(time.Hour).UnixMilli()}
		full := s
		full.Kind, full.Plan = SubjectPlan, plan
		tree := s
		if err := tree.SetPlan(plan); err != nil {
			b.Fatal(err)
		}
		tr, _ := NewPlanTree(plan)
		for _, c := range []struct {
			name  string
			proof *ApprovalProof
		}{
			{"full", &ApprovalProof{Subject: full}},
			{"tree", &ApprovalProof{Subject: tree.Header(), Step: tr.ProveCall("package", "update", base.Params, []string{host}, Filter{})}},
		} {
			// As the host decodes it from the request.
			raw, _ := json.Marshal(c.proof)
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.UseNumber()
			var got ApprovalProof
			if err := dec.Decode(&got); err != nil {
				b.Fatal(err)
			}
			r := *req
			r.Approval = &got
			b.Run(fmt.Sprintf("%s-%d", c.name, n), func(b *testing.B) {
				for range b.N {
					if err := got.Subject.Covers(&r, node, "SHA256:x", time.Second); err != nil {
						b.Fatal(err)
					}
					if _, err := SubjectDigest(&got.Subject); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(raw)), "carried-bytes")
			})
		}
	}
}

// BenchmarkNewPlanTree is the requester's (and the approver's) cost of a
// 1,000-host plan's tree: 10 calls per host, 10,001 leaves.
func BenchmarkNewPlanTree(b *testing.B) {
	plan := treePlan(1000)
	base := plan.Steps[0]
	for i := 1; i < 10; i++ {
		st := base
		st.Params = map[string]any{"package": "shop", "version": "2.0.0", "step": i}
		plan.Steps = append(plan.Steps, st)
	}
	for range b.N {
		t, err := NewPlanTree(plan)
		if err != nil {
			b.Fatal(err)
		}
		t.Prove(PlanLeaf{Agent: "package", Action: "update", Params: base.Params, Host: "web0500.prod.example.com"})
	}
}
