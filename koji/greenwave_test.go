package koji_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/fedora-skyline/skyline/koji"
	"github.com/fedora-skyline/skyline/koji/kojitest"
)

// TestGateFollowsPublishedVerdicts publishes verdicts and checks the gate
// the way Greenwave would decide bodhi_update_push_stable for the build.
func TestGateFollowsPublishedVerdicts(t *testing.T) {
	ctx := context.Background()
	const nvr = "hello-2.12.1-7.fc41"
	mk := func(v, arch string, index uint64) koji.Verdict {
		return koji.Verdict{NVR: nvr, Arch: arch, Verdict: v, LogIndex: index, TreeSize: index + 1,
			URL: "https://skyline.example.org/verdicts/" + itoa(index)}
	}
	tests := []struct {
		name      string
		verdicts  []koji.Verdict
		satisfied bool
		types     []string
	}{
		{"no verdict yet", nil, false, []string{"test-result-missing"}},
		{"insufficient publishes nothing", []koji.Verdict{mk(koji.VerdictInsufficient, "x86_64", 1)}, false, []string{"test-result-missing"}},
		{"reproduced", []koji.Verdict{mk(koji.VerdictReproduced, "x86_64", 1)}, true, []string{"test-result-passed"}},
		{"disputed", []koji.Verdict{mk(koji.VerdictDisputed, "x86_64", 1)}, false, []string{"test-result-failed"}},
		{"official mismatch", []koji.Verdict{mk(koji.VerdictOfficialMismatch, "x86_64", 1)}, false, []string{"test-result-failed"}},
		{"unreproducible", []koji.Verdict{mk(koji.VerdictUnreproducible, "x86_64", 1)}, false, []string{"test-result-failed"}},
		{"latest verdict wins on one arch", []koji.Verdict{mk(koji.VerdictDisputed, "x86_64", 1), mk(koji.VerdictReproduced, "x86_64", 2)}, true, []string{"test-result-passed"}},
		{"a later pass on another arch does not hide a failure",
			[]koji.Verdict{mk(koji.VerdictDisputed, "x86_64", 1), mk(koji.VerdictReproduced, "aarch64", 2)},
			false, []string{"test-result-passed", "test-result-failed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rdb := kojitest.NewFakeResultsDB(t, kojitest.FakeResultsDBConfig{})
			p := newPublisher(t, rdb, filepath.Join(t.TempDir(), "state.json"), nil)
			for _, v := range tt.verdicts {
				if _, err := p.Publish(ctx, v); err != nil {
					t.Fatal(err)
				}
			}
			// Another build's result must not count for this one.
			rdb.AddResult(koji.Testcase, "PASSED", map[string]string{"type": "koji_build", "item": "other-1-1.fc41"})
			d, err := koji.CheckGate(ctx, nil, rdb.URL(), koji.Testcase, nvr)
			if err != nil {
				t.Fatal(err)
			}
			var types []string
			for _, a := range d.Answers {
				types = append(types, a.Type)
			}
			if d.Satisfied != tt.satisfied || !equal(types, tt.types) {
				t.Errorf("decision = satisfied %v, answers %v; want %v, %v", d.Satisfied, types, tt.satisfied, tt.types)
			}
		})
	}
}

func TestGateCountsInfoAsPassing(t *testing.T) {
	// Greenwave's OUTCOMES_PASSED includes INFO: the reason skyline never
	// publishes INFO for an undecided build.
	rdb := kojitest.NewFakeResultsDB(t, kojitest.FakeResultsDBConfig{})
	rdb.AddResult(koji.Testcase, "INFO", map[string]string{"type": "koji_build", "item": "a-1-1"})
	d, err := koji.CheckGate(context.Background(), nil, rdb.URL(), koji.Testcase, "a-1-1")
	if err != nil || !d.Satisfied {
		t.Errorf("INFO result: %+v, %v; want satisfied", d, err)
	}
	// The other subject query Greenwave makes: original_spec_nvr.
	rdb.AddResult(koji.Testcase, "FAILED", map[string]string{"original_spec_nvr": "b-1-1"})
	d, err = koji.CheckGate(context.Background(), nil, rdb.URL(), koji.Testcase, "b-1-1")
	if err != nil || d.Satisfied || len(d.Answers) != 1 || d.Answers[0].Type != "test-result-failed" {
		t.Errorf("original_spec_nvr result: %+v, %v; want one failed answer", d, err)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
