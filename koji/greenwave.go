package koji

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// greenwaveDistinctOn is Greenwave's default DISTINCT_LATEST_RESULTS_ON
// (greenwave/config.py).
const greenwaveDistinctOn = "scenario,system_architecture,system_variant"

// GateAnswer is one answer of PassingTestCaseRule, named as Greenwave
// names them in its decision JSON.
type GateAnswer struct {
	Type     string // test-result-passed, -failed, -missing, -incomplete, -errored
	Testcase string
	ResultID int64  // 0 for test-result-missing
	Outcome  string // "" for test-result-missing
	Arch     string // the result's system_architecture, if any
}

// GateDecision is the outcome of checking one koji_build subject.
type GateDecision struct {
	Satisfied bool
	Answers   []GateAnswer
}

// CheckGate applies Greenwave's PassingTestCaseRule for testcase to the
// koji_build subject nvr, querying ResultsDB (API root resultsdbURL) as
// Greenwave's ResultsRetriever does: GET /results/latest with
// _distinct_on=scenario,system_architecture,system_variant and
// testcases=<testcase>, once with type=koji_build,brew-build&item=<nvr>
// and once with original_spec_nvr=<nvr> (conf/subject_types/koji_build.yaml).
// No result is "test-result-missing"; PASSED and INFO pass; every other
// outcome fails the gate (greenwave/policies.py PassingTestCaseRule.check).
func CheckGate(ctx context.Context, hc *http.Client, resultsdbURL, testcase, nvr string) (*GateDecision, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	base := strings.TrimRight(resultsdbURL, "/")
	queries := []url.Values{
		{"type": {"koji_build,brew-build"}, "item": {nvr}},
		{"original_spec_nvr": {nvr}},
	}
	var results []Result
	for _, q := range queries {
		q.Set("_distinct_on", greenwaveDistinctOn)
		q.Set("testcases", testcase)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/results/latest?"+q.Encode(), nil)
		if err != nil {
			return nil, fmt.Errorf("koji: gate %s: %w", nvr, err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, fmt.Errorf("koji: gate %s: %w", nvr, err)
		}
		v, err := decodeJSON(resp.Body, 8<<20)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("koji: gate %s: %w: HTTP %s", nvr, ErrRejected, resp.Status)
		}
		if err != nil {
			return nil, fmt.Errorf("koji: gate %s: %w", nvr, err)
		}
		list, err := ResultListFromJSON(v)
		if err != nil {
			return nil, fmt.Errorf("koji: gate %s: %w", nvr, err)
		}
		results = append(results, list...)
	}
	d := &GateDecision{Satisfied: true}
	if len(results) == 0 {
		d.Satisfied = false
		d.Answers = append(d.Answers, GateAnswer{Type: "test-result-missing", Testcase: testcase})
		return d, nil
	}
	for _, r := range results {
		a := GateAnswer{Testcase: testcase, ResultID: r.ID, Outcome: r.Outcome}
		if arch := r.Data["system_architecture"]; len(arch) > 0 {
			a.Arch = arch[0]
		}
		// Greenwave's OUTCOMES_PASSED, OUTCOMES_INCOMPLETE and OUTCOMES_ERROR
		// defaults (greenwave/config.py).
		switch r.Outcome {
		case OutcomePassed, OutcomeInfo:
			a.Type = "test-result-passed"
		case "QUEUED", "RUNNING":
			a.Type = "test-result-incomplete"
			d.Satisfied = false
		case "ERROR":
			a.Type = "test-result-errored"
			d.Satisfied = false
		default:
			a.Type = "test-result-failed"
			d.Satisfied = false
		}
		d.Answers = append(d.Answers, a)
	}
	return d, nil
}
