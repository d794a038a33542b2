package reliability

import (
	"fmt"
	"testing"
	"time"
)

// TestSmoke checks the harness on a whole cluster, without faults: two
// managers (one leads), three users exchange ledger messages, and every
// oracle agrees: nothing lost, duplicated or reordered in Kafka; one term.
func TestSmoke(t *testing.T) {
	s := New(t)
	m1, m2 := s.Manager("m1"), s.Manager("m2")
	ctx := Ctx(t, 2*time.Minute)
	ws := s.Online(ctx, "alice", "bob", "carol")
	base := m1.Health(t)
	const n = 200
	for i := int64(0); i < n; i++ {
		for _, w := range ws {
			to := ws[(i+1)%3].ID()
			if to == w.ID() {
				to = ws[(i+2)%3].ID()
			}
			if err := s.Send(ctx, w, to, i); err != nil {
				t.Fatalf("send: %v", err)
			}
		}
	}
	for _, w := range ws {
		s.Ledger.SawTopic(t, s.Env.Kafka, s.Topic(w.ID()))
	}
	r := s.Ledger.Report("kafka", nil)
	r.Check(t, 0, 0)
	if r.Delivered != 3*n {
		t.Errorf("delivered %d, want %d", r.Delivered, 3*n)
	}
	var terms []Term
	for _, m := range []*Proc{m1, m2} {
		tm, err := Terms(m.Name, m.Log())
		if err != nil {
			t.Fatal(err)
		}
		terms = append(terms, tm...)
	}
	if len(terms) != 1 {
		t.Errorf("want one leadership term, got %v", terms)
	}
	NoOverlap(t, terms, nil)
	m1.BackToBaseline(t, base, 10*time.Second)
	NoPanic(t, m1.Log(), m2.Log())
	Row(t, "smoke", "messages", fmt.Sprint(3*n), "lost", r.Lost, "dup", r.Duplicated)
}
