package witness

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
)

// feed builds final outcomes with an agreeing set "good" at increasing
// log indices.
type feed struct{ next uint64 }

// outcome returns a final outcome whose counted results are the given
// (key, operator, outlier) triples.
func (fd *feed) outcome(votes ...vote) Outcome {
	o := Outcome{Build: testBuild, Verdict: VerdictReproduced, Final: true, ResultSet: "good"}
	for _, v := range votes {
		fd.next++
		set := "good"
		if v.outlier {
			set = "evil"
			o.Outliers = append(o.Outliers, Outlier{Vote: Vote{Index: fd.next, KeyID: v.key, Operator: v.op, ResultSet: set}})
		}
		o.Counted = append(o.Counted, Vote{Index: fd.next, KeyID: v.key, Operator: v.op, ResultSet: set})
	}
	fd.next++
	o.At = fd.next
	return o
}

type vote struct {
	key, op string
	outlier bool
}

func mustReputation(t testing.TB) *Reputation {
	t.Helper()
	r, err := NewReputation(DefaultReputationWindow, DefaultMaxOutliers)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func observe(t testing.TB, r *Reputation, o Outcome) []Notice {
	t.Helper()
	ns, err := r.Observe(o)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// TestReputationFlagsSecondOutlier: one outlier in 50 results is the normal
// flaky rate; the second flags the key and its operator.
func TestReputationFlagsSecondOutlier(t *testing.T) {
	r := mustReputation(t)
	var fd feed
	if ns := observe(t, r, fd.outcome(vote{"k", "op", true}, vote{"other", "op2", false})); len(ns) != 0 {
		t.Fatalf("notices after one outlier: %+v", ns)
	}
	if r.IsFlagged(SubjectKey, "k") || r.IsFlagged(SubjectOperator, "op") {
		t.Fatal("flagged after one outlier")
	}
	first := fd.next - 2
	for range 10 {
		observe(t, r, fd.outcome(vote{"k", "op", false}))
	}
	o := fd.outcome(vote{"k", "op", true})
	second := o.Counted[0].Index
	ns := observe(t, r, o)
	if len(ns) != 2 {
		t.Fatalf("notices %+v, want one for the key and one for the operator", ns)
	}
	for i, want := range []struct{ kind, id string }{{SubjectKey, "k"}, {SubjectOperator, "op"}} {
		n := ns[i]
		if n.Kind != want.kind || n.ID != want.id || !slices.Equal(n.Outliers, []uint64{first, second}) || n.Results != 12 {
			t.Errorf("notice %+v, want %s %s with outliers [%d %d] of 12", n, want.kind, want.id, first, second)
		}
		if n.Message == "" {
			t.Error("notice without a message")
		}
	}
	if !r.IsFlagged(SubjectKey, "k") || r.IsFlagged(SubjectKey, "other") {
		t.Error("wrong keys flagged")
	}
	if got := r.Flagged(); len(got) != 2 || got[0].Kind != SubjectKey || got[1].Kind != SubjectOperator {
		t.Errorf("Flagged() = %+v", got)
	}
}

// TestReputationWindowSlides: an outlier 50 results ago no longer counts.
func TestReputationWindowSlides(t *testing.T) {
	for _, tt := range []struct {
		between int
		flagged bool
	}{
		{48, true},  // outlier, 48 good, outlier: 2 outliers in the last 50
		{49, false}, // outlier, 49 good, outlier: the first has slid out
	} {
		t.Run(fmt.Sprint(tt.between), func(t *testing.T) {
			r := mustReputation(t)
			var fd feed
			observe(t, r, fd.outcome(vote{"k", "op", true}))
			for range tt.between {
				observe(t, r, fd.outcome(vote{"k", "op", false}))
			}
			ns := observe(t, r, fd.outcome(vote{"k", "op", true}))
			if got := r.IsFlagged(SubjectKey, "k"); got != tt.flagged || (len(ns) > 0) != tt.flagged {
				t.Errorf("flagged %v notices %d, want %v", got, len(ns), tt.flagged)
			}
		})
	}
}

// TestReputationOperatorAcrossKeys: an operator is judged on all its keys'
// results, a key only on its own.
func TestReputationOperatorAcrossKeys(t *testing.T) {
	r := mustReputation(t)
	var fd feed
	observe(t, r, fd.outcome(vote{"k1", "op", true}))
	ns := observe(t, r, fd.outcome(vote{"k2", "op", true}))
	if len(ns) != 1 || ns[0].Kind != SubjectOperator || ns[0].ID != "op" {
		t.Fatalf("notices %+v, want the operator only", ns)
	}
	if r.IsFlagged(SubjectKey, "k1") || r.IsFlagged(SubjectKey, "k2") {
		t.Error("a key flagged for one outlier")
	}
}

// TestReputationIgnores: outcomes that are not final or have no agreeing
// group say nothing about outliers; an outcome fed twice counts once.
func TestReputationIgnores(t *testing.T) {
	r := mustReputation(t)
	var fd feed
	o := fd.outcome(vote{"k", "op", true})
	o.Final = false
	observe(t, r, o)
	o = fd.outcome(vote{"k", "op", true})
	o.ResultSet, o.Verdict = "", VerdictUnreproducible
	observe(t, r, o)
	if b, _ := json.Marshal(r); string(b) != `{"window":50,"max_outliers":1,"last":4,"keys":{},"operators":{}}` {
		t.Errorf("state after ignored outcomes: %s", b)
	}
	o = fd.outcome(vote{"k", "op", true})
	observe(t, r, o)
	o.At = fd.next // the same outcome again, e.g. after the official build arrived
	if ns := observe(t, r, o); len(ns) != 0 || r.IsFlagged(SubjectKey, "k") {
		t.Errorf("outcome fed twice counted twice: %+v", ns)
	}
	// Once flagged, feeding the flagging outcome again does not repeat
	// its notices.
	o = fd.outcome(vote{"k", "op", true})
	if ns := observe(t, r, o); len(ns) != 2 {
		t.Fatalf("second outlier: notices %+v", ns)
	}
	o.At = fd.next
	if ns := observe(t, r, o); len(ns) != 0 {
		t.Errorf("outcome fed twice repeated its notices: %+v", ns)
	}
}

// TestReputationOrderAndState: out-of-order outcomes and bad persisted
// state are rejected without changing the state; good state round-trips
// and a restored Reputation continues exactly as the original.
func TestReputationOrderAndState(t *testing.T) {
	r := mustReputation(t)
	var fd feed
	for i := range 30 {
		observe(t, r, fd.outcome(vote{"k", "op", i%20 == 0}, vote{fmt.Sprint("x", i%3), "opx", false}))
	}
	before, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	old := Outcome{Final: true, ResultSet: "good", At: 3, Counted: []Vote{{Index: 2, KeyID: "k", Operator: "op", ResultSet: "evil"}}}
	if _, err := r.Observe(old); !errors.Is(err, ErrOutOfOrder) {
		t.Errorf("out-of-order outcome: %v, want ErrOutOfOrder", err)
	}
	for _, bad := range []string{
		``,
		`{}`,
		`[]`,
		`{"window":50,"max_outliers":1,"last":4,"keys":{},"operators":{}} {}`,
		`{"window":50,"max_outliers":1,"last":4,"keys":{},"operators":{},"extra":1}`,
		`{"window":0,"max_outliers":0,"last":4,"keys":{},"operators":{}}`,
		`{"window":50,"max_outliers":50,"last":4,"keys":{},"operators":{}}`,
		`{"window":2,"max_outliers":1,"last":9,"keys":{"k":[{"index":1},{"index":2},{"index":3}]},"operators":{}}`,
		`{"window":50,"max_outliers":1,"last":4,"keys":{"k":[{"index":1},{"index":1}]},"operators":{}}`,
		`{"window":50,"max_outliers":1,"last":4,"keys":{"k":[{"index":5}]},"operators":{}}`,
		`{"window":50,"max_outliers":1,"last":4,"keys":{"":[{"index":1}]},"operators":{}}`,
		`{"window":50,"max_outliers":1,"last":4,"keys":{"k":[]},"operators":{}}`,
	} {
		if err := r.UnmarshalJSON([]byte(bad)); !errors.Is(err, ErrState) {
			t.Errorf("UnmarshalJSON(%q) = %v, want ErrState", bad, err)
		}
	}
	after, _ := json.Marshal(r)
	if string(before) != string(after) {
		t.Fatalf("rejected input changed the state:\n%s\n%s", before, after)
	}

	var restored Reputation
	if err := json.Unmarshal(before, &restored); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		o := fd.outcome(vote{"k", "op", i%7 == 0}, vote{"y", "opy", i%9 == 0})
		n1 := observe(t, r, o)
		n2 := observe(t, &restored, o)
		if !reflect.DeepEqual(n1, n2) {
			t.Fatalf("restored reputation diverged at %d: %+v vs %+v", i, n1, n2)
		}
	}
	b1, _ := json.Marshal(r)
	b2, _ := json.Marshal(&restored)
	if string(b1) != string(b2) {
		t.Errorf("restored state differs:\n%s\n%s", b1, b2)
	}
	if !r.IsFlagged(SubjectKey, "k") {
		t.Error("test feed never flagged k: the comparison above is too weak")
	}
}

func TestNewReputationConfig(t *testing.T) {
	for _, c := range [][2]int{{0, 0}, {50, -1}, {50, 50}, {1, 1}} {
		if _, err := NewReputation(c[0], c[1]); !errors.Is(err, ErrConfig) {
			t.Errorf("NewReputation(%d, %d) = %v, want ErrConfig", c[0], c[1], err)
		}
	}
}

// FuzzReputationState (seeds in testdata/fuzz): persisted state either loads into a Reputation that
// re-marshals to a state that loads to the same bytes, or is rejected with
// ErrState and changes nothing.
func FuzzReputationState(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReputation(DefaultReputationWindow, DefaultMaxOutliers)
		if err != nil {
			t.Fatal(err)
		}
		before, _ := json.Marshal(r)
		if err := r.UnmarshalJSON(data); err != nil {
			if !errors.Is(err, ErrState) {
				t.Fatalf("error %v is not ErrState", err)
			}
			if after, _ := json.Marshal(r); string(after) != string(before) {
				t.Fatal("rejected state changed the reputation")
			}
			return
		}
		b1, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var r2 Reputation
		if err := r2.UnmarshalJSON(b1); err != nil {
			t.Fatalf("re-marshalled state rejected: %v\n%s", err, b1)
		}
		b2, _ := json.Marshal(&r2)
		if string(b1) != string(b2) {
			t.Fatalf("state not stable:\n%s\n%s", b1, b2)
		}
		// A loaded state must keep working.
		r.Flagged()
		o := Outcome{Final: true, ResultSet: "good", At: r.last, Counted: []Vote{{Index: r.last, KeyID: "k", Operator: "op", ResultSet: "evil"}}}
		if _, err := r.Observe(o); err != nil {
			t.Fatal(err)
		}
	})
}

// BenchmarkReputationObserve measures one 10-result outcome with one
// outlier, for 10 keys whose windows are full.
func BenchmarkReputationObserve(b *testing.B) {
	r := mustReputation(b)
	var fd feed
	vs := make([]vote, 10)
	for i := range vs {
		vs[i] = vote{key: fmt.Sprint("k", i), op: fmt.Sprint("op", i)}
	}
	for range 60 {
		observe(b, r, fd.outcome(vs...))
	}
	vs[3].outlier = true
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		o := fd.outcome(vs...)
		b.StartTimer()
		observe(b, r, o)
	}
}

func TestReputationZeroValue(t *testing.T) {
	var r Reputation
	if _, err := r.Observe(Outcome{Final: true, ResultSet: "good", At: 5}); !errors.Is(err, ErrConfig) || r.last != 0 {
		t.Errorf("zero Reputation: %v, last %d", err, r.last)
	}
}
