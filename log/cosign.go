package log

// The log side of witnessing: every new checkpoint is sent to the
// configured witnesses with C2SP tlog-witness add-checkpoint
// (https://c2sp.org/tlog-witness), and the C2SP tlog-cosignature lines they
// return are appended to the checkpoint the log serves. The note stays a
// valid C2SP signed-note: verifiers that know only the log key ignore the
// cosignatures (signed-note: "unknown keys are ignored").

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// Errors of the gatherer, checked with errors.Is.
var (
	// ErrWitness: a witness refused the checkpoint or answered outside the
	// protocol.
	ErrWitness = errors.New("log: witness did not cosign")
)

// Gatherer defaults.
const (
	DefaultWitnessTimeout = 10 * time.Second
	maxWitnessResponse    = 64 << 10
	maxConflictRetries    = 3
)

// WitnessConfig is one witness a log asks for cosignatures.
type WitnessConfig struct {
	// Name names the witness in logs. Default: the key name.
	Name string `toml:"name"`
	// URL is the witness's submission prefix: requests go to
	// URL + "/add-checkpoint". Required.
	URL string `toml:"url"`
	// VerifierKey is the C2SP signed-note verifier key of the witness's
	// cosignatures (an Ed25519 cosignature/v1 key, type 0x04, or a plain
	// Ed25519 key, which is read as one). Required.
	VerifierKey string `toml:"verifier_key"`
}

// GathererConfig configures a Gatherer.
type GathererConfig struct {
	// Witnesses are asked for a cosignature of every new checkpoint.
	Witnesses []WitnessConfig
	// Timeout bounds each request to a witness. Default 10s.
	Timeout time.Duration
	// Client sends the requests. Default: a client with Timeout.
	Client *http.Client
	// Logger receives operational events. Default: discard.
	Logger *slog.Logger
}

// gWitness is a witness and the size the log believes it last cosigned.
type gWitness struct {
	cfg      WitnessConfig
	verifier note.Verifier

	mu   sync.Mutex // held for a whole exchange
	size uint64
}

// Gatherer gathers witness cosignatures for the log's checkpoints. Wire it
// into `skyline serve` by running Run in a goroutine and serving the read
// API from Served() instead of the *Log:
//
//	g, err := log.NewGatherer(l, log.GathererConfig{Witnesses: ...})
//	go g.Run(ctx)
//	srv, err := api.NewServer(apiCfg, svc, g.Served())
type Gatherer struct {
	log       *Log
	cfg       GathererConfig
	witnesses []*gWitness

	mu       sync.Mutex
	cosigned []byte // latest gathered checkpoint with its cosignatures
	size     uint64 // its tree size
}

// NewGatherer returns a gatherer for l's checkpoints.
func NewGatherer(l *Log, cfg GathererConfig) (*Gatherer, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultWitnessTimeout
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.Timeout}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Gatherer{log: l, cfg: cfg}
	for _, w := range cfg.Witnesses {
		v, err := fnote.NewVerifierForCosignatureV1(w.VerifierKey)
		if err != nil {
			return nil, fmt.Errorf("log: witness %q key: %w: %v", w.Name, ErrConfig, err)
		}
		if !strings.HasPrefix(w.URL, "http://") && !strings.HasPrefix(w.URL, "https://") {
			return nil, fmt.Errorf("log: witness %q URL %q: %w", w.Name, w.URL, ErrConfig)
		}
		if w.Name == "" {
			w.Name = v.Name()
		}
		w.URL = strings.TrimSuffix(w.URL, "/")
		g.witnesses = append(g.witnesses, &gWitness{cfg: w, verifier: v})
	}
	return g, nil
}

// Checkpoint returns the checkpoint to serve: the latest one whose
// cosignatures were gathered, with them appended, or the log's latest
// checkpoint before any gathering or when no witness is configured.
func (g *Gatherer) Checkpoint() []byte {
	if len(g.witnesses) == 0 {
		return g.log.Checkpoint()
	}
	g.mu.Lock()
	cp := g.cosigned
	g.mu.Unlock()
	if cp == nil {
		return g.log.Checkpoint()
	}
	return bytes.Clone(cp)
}

// Run gathers cosignatures for every new checkpoint until ctx is done.
func (g *Gatherer) Run(ctx context.Context) error {
	for {
		g.mu.Lock()
		next := g.size + 1
		g.mu.Unlock()
		if _, err := g.log.WaitCheckpoint(ctx, next); err != nil {
			if ctx.Err() != nil || errors.Is(err, ErrClosed) {
				return nil
			}
			g.cfg.Logger.Error("log: gatherer: waiting for a checkpoint", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
			continue
		}
		if err := g.Gather(ctx); err != nil {
			g.cfg.Logger.Warn("log: checkpoint not cosigned by every witness", "err", err)
		}
	}
}

// Gather sends the log's latest checkpoint to every witness (in parallel)
// and publishes it with the cosignatures that verify. It returns the
// witnesses' errors, joined; the checkpoint is published whatever they are.
func (g *Gatherer) Gather(ctx context.Context) error {
	cp := g.log.Checkpoint()
	if cp == nil {
		return nil
	}
	size, err := checkpointSize(cp)
	if err != nil {
		return err
	}
	sigs := make([][]byte, len(g.witnesses))
	errs := make([]error, len(g.witnesses))
	var wg sync.WaitGroup
	for i, w := range g.witnesses {
		wg.Go(func() { sigs[i], errs[i] = g.ask(ctx, w, cp, size) })
	}
	wg.Wait()
	out := bytes.Clone(cp)
	for _, s := range sigs {
		out = append(out, s...)
	}
	g.mu.Lock()
	if size >= g.size {
		g.cosigned, g.size = out, size
	}
	g.mu.Unlock()
	return errors.Join(errs...)
}

// checkpointSize reads the tree size from a checkpoint note's second line.
func checkpointSize(cp []byte) (uint64, error) {
	lines := strings.SplitN(string(cp), "\n", 3)
	if len(lines) < 3 {
		return 0, fmt.Errorf("log: malformed checkpoint")
	}
	return strconv.ParseUint(lines[1], 10, 64)
}

// ask runs add-checkpoint with one witness, following its 409 answers to
// the size it last cosigned (C2SP tlog-witness), and returns the witness's
// verified cosignature lines.
func (g *Gatherer) ask(ctx context.Context, w *gWitness, cp []byte, size uint64) ([]byte, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for range maxConflictRetries {
		old := w.size
		if old > size {
			return nil, fmt.Errorf("log: witness %s cosigned size %d, beyond our checkpoint %d: %w", w.cfg.Name, old, size, ErrWitness)
		}
		var proof [][]byte
		if old > 0 && old < size {
			var err error
			if proof, err = g.log.ConsistencyProof(ctx, old, size); err != nil {
				return nil, fmt.Errorf("log: witness %s: consistency proof %d..%d: %w", w.cfg.Name, old, size, err)
			}
		}
		status, ctype, body, err := g.post(ctx, w, addCheckpointBody(old, proof, cp))
		if err != nil {
			return nil, err
		}
		switch {
		case status == http.StatusOK:
			sigs, err := verifiedCosignatures(cp, body, w.verifier)
			if err != nil {
				return nil, fmt.Errorf("log: witness %s: %w", w.cfg.Name, err)
			}
			w.size = size
			return sigs, nil
		case status == http.StatusConflict && ctype == "text/x.tlog.size":
			// C2SP tlog-witness: the body is the witness's latest size.
			n, err := parseSizeBody(body)
			if err != nil {
				return nil, fmt.Errorf("log: witness %s: 409 body %q: %w", w.cfg.Name, truncate(string(body), 64), ErrWitness)
			}
			g.cfg.Logger.Debug("log: witness is at another size", "witness", w.cfg.Name, "size", n, "we_sent", old)
			w.size = n
		default:
			return nil, fmt.Errorf("log: witness %s: %d: %s: %w", w.cfg.Name, status, truncate(strings.TrimSpace(string(body)), 200), ErrWitness)
		}
	}
	return nil, fmt.Errorf("log: witness %s: still in conflict after %d tries: %w", w.cfg.Name, maxConflictRetries, ErrWitness)
}

func (g *Gatherer) post(ctx context.Context, w *gWitness, body []byte) (int, string, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL+"/add-checkpoint", bytes.NewReader(body))
	if err != nil {
		return 0, "", nil, fmt.Errorf("log: witness %s: %w: %v", w.cfg.Name, ErrWitness, err)
	}
	resp, err := g.cfg.Client.Do(req)
	if err != nil {
		return 0, "", nil, fmt.Errorf("log: witness %s: %w: %v", w.cfg.Name, ErrWitness, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxWitnessResponse))
	if err != nil {
		return 0, "", nil, fmt.Errorf("log: witness %s: %w: %v", w.cfg.Name, ErrWitness, err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), b, nil
}

// addCheckpointBody is a C2SP tlog-witness add-checkpoint request body.
func addCheckpointBody(old uint64, proof [][]byte, cp []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "old %d\n", old)
	for _, h := range proof {
		b.WriteString(base64.StdEncoding.EncodeToString(h))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.Write(cp)
	return b.Bytes()
}

// parseSizeBody parses a text/x.tlog.size body: a canonical decimal and a
// newline.
func parseSizeBody(b []byte) (uint64, error) {
	s, ok := strings.CutSuffix(string(b), "\n")
	if !ok || s == "" || (len(s) > 1 && s[0] == '0') || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("not a size line")
	}
	return strconv.ParseUint(s, 10, 64)
}

// verifiedCosignatures returns the signature lines of an add-checkpoint
// answer that verify on cp under the witness's key (C2SP tlog-witness:
// "the client MAY concatenate it to the checkpoint, and use a note
// verification function configured with the witness keys it trusts").
// Lines of other keys are dropped; no verified line is ErrWitness.
func verifiedCosignatures(cp, body []byte, v note.Verifier) ([]byte, error) {
	if len(body) == 0 || !bytes.HasSuffix(body, []byte("\n")) {
		return nil, fmt.Errorf("answer is not signature lines: %w", ErrWitness)
	}
	var out []byte
	for _, line := range bytes.SplitAfter(body, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if !bytes.HasPrefix(line, []byte("— ")) {
			return nil, fmt.Errorf("answer line %q is not a signature: %w", truncate(string(line), 64), ErrWitness)
		}
		n, err := note.Open(append(bytes.Clone(cp), line...), note.VerifierList(v))
		if err != nil {
			continue // another key's line, or not a checkpoint note: ignored
		}
		if len(n.Sigs) == 1 {
			out = append(out, line...)
		}
	}
	if out == nil {
		return nil, fmt.Errorf("no cosignature verifies under the witness key: %w", ErrWitness)
	}
	return out, nil
}

// Served returns the log's read interface with the cosigned checkpoint:
// the *Log's methods, except that ReadPath("checkpoint") is Checkpoint().
func (g *Gatherer) Served() *WitnessedLog { return &WitnessedLog{Log: g.log, g: g} }

// WitnessedLog is a *Log whose checkpoint carries the gathered witness
// cosignatures.
type WitnessedLog struct {
	*Log
	g *Gatherer
}

// ReadPath is Log.ReadPath with the cosigned checkpoint.
func (w *WitnessedLog) ReadPath(ctx context.Context, path string) ([]byte, error) {
	if path == "checkpoint" {
		cp := w.g.Checkpoint()
		if cp == nil {
			return nil, fmt.Errorf("log: checkpoint: %w", ErrNotFound)
		}
		return cp, nil
	}
	return w.Log.ReadPath(ctx, path)
}
