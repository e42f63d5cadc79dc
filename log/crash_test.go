package log

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	fmtlog "github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"golang.org/x/mod/sumdb/note"
)

var crashKills = flag.Int("crash.kills", 20, "SIGKILLs of the appending child process in TestCrashRecovery")

const (
	crashDirEnv = "SKYLINE_LOG_CRASH_DIR"
	crashKeyEnv = "SKYLINE_LOG_CRASH_KEY"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		os.Exit(crashChild(dir, os.Getenv(crashKeyEnv)))
	}
	os.Exit(m.Run())
}

// crashChild appends with many concurrent writers and reports, one line per
// write(2) so that a kill never tears a line:
//
//	ack <index> <leaf hash hex> <duplicate>   after Add returned
//	cp <base64 signed note>                   after a checkpoint was published
func crashChild(dir, skey string) int {
	signer, err := note.NewSigner(skey)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := Open(ctx, Config{Dir: dir, Origin: testOrigin, Signer: signer, CheckpointInterval: 10 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 3
	}
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		os.Stdout.Write(fmt.Appendf(nil, format, args...))
	}
	go func() {
		for size := uint64(1); ; {
			raw, err := l.WaitCheckpoint(ctx, size)
			if err != nil {
				return
			}
			say("cp %s\n", base64.StdEncoding.EncodeToString(raw))
			cp, _ := parseCheckpointNote(raw, testOrigin)
			size = cp.size + 1
		}
	}()
	for w := range 32 {
		go func() {
			var mine [][]byte
			for i := 0; ; i++ {
				var e []byte
				if len(mine) > 0 && mrand.IntN(20) == 0 {
					e = mine[mrand.IntN(len(mine))] // a resubmission
				} else {
					e = make([]byte, 32+mrand.IntN(480))
					rand.Read(e)
					copy(e, fmt.Sprintf("w%d-%d", w, i))
					mine = append(mine, e)
				}
				r, err := l.Add(ctx, e)
				if err != nil {
					fmt.Fprintln(os.Stderr, "add:", err)
					os.Exit(4)
				}
				say("ack %d %x %t\n", r.Index, hasher.HashLeaf(e), r.Duplicate)
			}
		}()
	}
	<-ctx.Done()
	return 5
}

type crashCheckpoint struct {
	size uint64
	root []byte
}

// TestCrashRecovery SIGKILLs a child process that appends with 32 concurrent
// writers at random moments, and after every kill reopens the log and checks
// that every acknowledged index holds the acknowledged bytes and that every
// checkpoint ever published is consistent with the recovered tree.
func TestCrashRecovery(t *testing.T) {
	k := newTestKey(t)
	dir := t.TempDir()
	acked := map[uint64]string{} // index -> leaf hash hex
	byLeaf := map[string]uint64{}
	var cps []crashCheckpoint
	acks, dups, losses := 0, 0, 0
	var firstAck, checking time.Duration
	for kill := range *crashKills {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashKeyEnv+"="+k.skey)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		roundStart := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		var got []string
		// Kill at a random moment after the child started acknowledging.
		var killAt <-chan time.Time
		timeout := time.After(60 * time.Second)
	read:
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					break read
				}
				got = append(got, line)
				if killAt == nil && len(got) == 1 {
					firstAck += time.Since(roundStart)
					killAt = time.After(time.Duration(mrand.IntN(100)) * time.Millisecond)
				}
			case <-killAt:
				cmd.Process.Kill() // SIGKILL
				killAt = nil
			case <-timeout:
				cmd.Process.Kill()
				t.Fatalf("round %d: child produced no acknowledgement in 60s; stderr:\n%s", kill, stderr.String())
			}
		}
		cmd.Wait()
		if len(got) == 0 {
			t.Fatalf("round %d: child exited without output; stderr:\n%s", kill, stderr.String())
		}
		for _, line := range got {
			f := strings.Fields(line)
			switch {
			case len(f) == 4 && f[0] == "ack":
				idx, _ := strconv.ParseUint(f[1], 10, 64)
				if prev, ok := acked[idx]; ok && prev != f[2] {
					t.Fatalf("index %d acknowledged for two different entries", idx)
				}
				if prev, ok := byLeaf[f[2]]; ok && prev != idx {
					t.Fatalf("entry %s acknowledged at %d and %d: deduplication failed", f[2], prev, idx)
				}
				if f[3] == "true" {
					dups++
				} else {
					acks++
				}
				acked[idx], byLeaf[f[2]] = f[2], idx
			case len(f) == 2 && f[0] == "cp":
				raw, err := base64.StdEncoding.DecodeString(f[1])
				if err != nil {
					t.Fatal(err)
				}
				cp, _, _, err := fmtlog.ParseCheckpoint(raw, testOrigin, k.verifier)
				if err != nil {
					t.Fatalf("published checkpoint does not verify: %v", err)
				}
				cps = append(cps, crashCheckpoint{cp.Size, cp.Hash})
			default:
				t.Fatalf("bad child line %q", line)
			}
		}

		// Restart and check.
		checkStart := time.Now()
		cfg := testConfig(t, k)
		cfg.Dir = dir
		cfg.CheckpointInterval = time.Hour
		l, err := Open(context.Background(), cfg)
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", kill, err)
		}
		size, root := l.Size()
		entries := entriesFromBundles(t, l, size)
		for idx, leaf := range acked {
			if idx >= size || hex.EncodeToString(hasher.HashLeaf([]byte(entries[idx]))) != leaf {
				losses++
				t.Errorf("round %d: acknowledged entry %d lost or changed (size %d)", kill, idx, size)
			}
		}
		if got := refRoots(entries)[size]; !bytes.Equal(got, root) {
			t.Fatalf("round %d: entries give root %x at size %d, the log says %x", kill, got, size, root)
		}
		for _, cp := range cps {
			p, err := l.ConsistencyProof(context.Background(), cp.size, size)
			if err != nil {
				t.Fatalf("round %d: checkpoint %d beyond recovered size %d: %v", kill, cp.size, size, err)
			}
			if err := proof.VerifyConsistency(hasher, cp.size, size, p, cp.root, root); err != nil {
				t.Fatalf("round %d: published checkpoint %d inconsistent with the recovered tree %d: %v", kill, cp.size, size, err)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		checking += time.Since(checkStart)
	}
	if len(cps) == 0 {
		t.Fatal("no checkpoint was published in any round; the consistency check proved nothing")
	}
	t.Logf("crash figures: kills=%d acks=%d duplicate_acks=%d checkpoints=%d losses=%d final_acked_index_max=%d (child start to first ack %v, restart checks %v, in total)",
		*crashKills, acks, dups, len(cps), losses, maxKey(acked), firstAck, checking)
}

// entriesFromBundles reads the first size entries, as an auditor would,
// from the entry bundles alone.
func entriesFromBundles(t *testing.T, l *Log, size uint64) []string {
	t.Helper()
	var entries []string
	for n := uint64(0); n*TileWidth < size; n++ {
		p := TilePath{Entries: true, Index: n}
		if w := size - n*TileWidth; w < TileWidth {
			p.Width = uint16(w)
		}
		b, err := l.ReadPath(context.Background(), p.String())
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range parseBundle(t, b) {
			entries = append(entries, string(e))
		}
	}
	if uint64(len(entries)) != size {
		t.Fatalf("bundles hold %d entries, size %d", len(entries), size)
	}
	return entries
}

func maxKey(m map[uint64]string) uint64 {
	var mx uint64
	for k := range m {
		mx = max(mx, k)
	}
	return mx
}
