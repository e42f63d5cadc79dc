package main

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestMain lets the test binary stand in for skyline-bench when serve
// runs its load generator as a child process (os.Executable is the test
// binary then).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "serve-load" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func keyValues(t *testing.T, line string) map[string]string {
	t.Helper()
	kv := map[string]string{}
	for _, f := range strings.Fields(line) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			t.Fatalf("not key=value: %q", f)
		}
		kv[k] = v
	}
	return kv
}

// TestServeBench runs the serve benchmark small with each load generator
// and checks that every submission was accepted and logged (the benchmark
// itself fails if the log did not grow by exactly the accepted count) and
// that the server's own CPU is told apart only with a child load generator.
func TestServeBench(t *testing.T) {
	for _, tc := range []struct {
		args        []string
		serverSplit bool
	}{
		{[]string{"-loadgen", "child"}, true},
		{[]string{"-loadgen", "self"}, false},
		{[]string{"-loadgen", "self", "-client", "go"}, false},
		{[]string{"-loadgen", "child", "-rate", "400"}, true},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			args := append([]string{"serve", "-n", "60", "-c", "8", "-operators", "10", "-checkpoint-interval", "20ms", "-dir", t.TempDir()}, tc.args...)
			if code := run(args, &out, &errb); code != 0 {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			kv := keyValues(t, out.String())
			if kv["failures"] != "0" || kv["n"] != "60" || kv["c"] != "8" || kv["sigcheck"] != "true" {
				t.Errorf("want 60 submissions by 8 clients, none failed: %s", out.String())
			}
			for _, k := range []string{"subs_per_s", "p50_ms", "p99_ms", "cpu_s_per_1k", "env_bytes"} {
				if v, err := strconv.ParseFloat(kv[k], 64); err != nil || v <= 0 {
					t.Errorf("%s=%q, want a positive number", k, kv[k])
				}
			}
			server, _ := strconv.ParseFloat(kv["server_cpu_s_per_1k"], 64)
			load, _ := strconv.ParseFloat(kv["loadgen_cpu_s_per_1k"], 64)
			if tc.serverSplit && (server <= 0 || load <= 0) || !tc.serverSplit && (server != -1 || load != -1) {
				t.Errorf("server/loadgen CPU %v/%v with %v: %s", server, load, tc.args, out.String())
			}
		})
	}
}

func TestServeBenchRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "-client", "curl"},
		{"serve", "-loadgen", "elsewhere"},
		{"serve", "-client", "go", "-loadgen", "child"},
		{"serve", "-operators", "9"},
		{"serve-load"},
	} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 4 {
			t.Errorf("%v: exit %d, want 4 (%s)", args, code, errb.String())
		}
	}
}

// TestRawConn checks the load generator's HTTP client against net/http's
// server: the status and body of each answer, a refusal counted as a
// failure, and a connection the server closes redialled.
func TestRawConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch string(mustRead(r)) {
		case "ok":
			w.Write([]byte(`{"index":7,"duplicate":false}`))
		case "dup":
			w.Write([]byte(`{"index":7,"duplicate":true}`))
		case "close":
			w.Header().Set("Connection", "close")
			w.Write([]byte(`{"index":8,"duplicate":false}`))
		default:
			http.Error(w, `{"error":"no","code":"bad"}`, http.StatusBadRequest)
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	addr := ln.Addr().String()
	reqs := [][]byte{
		rawRequest(addr, "/submit", []byte("ok")),
		rawRequest(addr, "/submit", []byte("dup")),
		rawRequest(addr, "/submit", []byte("close")),
		rawRequest(addr, "/submit", []byte("nope")),
	}
	s := &rawSubmitter{newRawConn(addr), reqs}
	defer s.close()
	for round := range 2 { // the second round runs on a redialled connection
		if err := s.submit(t.Context(), 0); err != nil {
			t.Errorf("round %d: ok: %v", round, err)
		}
		if err := s.submit(t.Context(), 1); err == nil || !strings.Contains(err.Error(), "duplicate") {
			t.Errorf("round %d: duplicate answer: %v, want an error", round, err)
		}
		if err := s.submit(t.Context(), 2); err != nil {
			t.Errorf("round %d: close: %v", round, err)
		}
		if s.c.conn != nil {
			t.Errorf("round %d: connection kept after Connection: close", round)
		}
		if err := s.submit(t.Context(), 3); err == nil || !strings.Contains(err.Error(), "HTTP 400") {
			t.Errorf("round %d: refusal: %v, want HTTP 400", round, err)
		}
	}
}

func mustRead(r *http.Request) []byte {
	var b bytes.Buffer
	b.ReadFrom(r.Body)
	return b.Bytes()
}
