package witness

// The release gate's policy: what `skyline verify` trusts. docs/verify.md
// describes the file; testdata/policy.example.toml is a complete example.

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/fedora-skyline/skyline/attest"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// ErrPolicyFile: the verify policy file is malformed, has unknown keys or
// names unusable keys.
var ErrPolicyFile = errors.New("invalid verify policy")

// maxPolicyFile bounds the size of a policy file.
const maxPolicyFile = 1 << 20

// VerifyPolicy is the policy of `skyline verify`: the log it reads, the
// keys it trusts and the agreement rules it applies. Load it with
// LoadVerifyPolicy or ParseVerifyPolicy, which fill the defaults and
// check it.
type VerifyPolicy struct {
	// Log names the log and its checkpoint key. Required.
	Log LogPolicy `toml:"log"`
	// Coordinator is the key that signs enrolments, leases and job closes.
	// Default: the log's checkpoint key (skyline serve signs both with one
	// Ed25519 key).
	Coordinator KeyPolicy `toml:"coordinator"`
	// WitnessQuorum is k of k-of-n: how many distinct policy witnesses must
	// cosign the checkpoint and vouch for the verdict. Default: all of them.
	WitnessQuorum int `toml:"witness_quorum"`
	// Witnesses are the n witnesses. At least one is required.
	Witnesses []WitnessPolicy `toml:"witness"`
	// MaxCosignatureAge, when set, counts only cosignatures made at most
	// this long ago (their cosignature/v1 timestamp): a log cannot then
	// serve an old, validly cosigned checkpoint to hide newer entries.
	// Default 0: not checked.
	MaxCosignatureAge time.Duration `toml:"max_cosignature_age"`
	// Agreement is the agreement policy applied locally. Default
	// DefaultPolicy(): 10 leases, quorum 5, max dissent 1, official must
	// match.
	Agreement *Policy `toml:"agreement"`

	// Filled by the loader.
	logVerifier note.Verifier
	coordinator *attest.Verifier
	cosigners   []note.Verifier
	verdictKeys map[string]int // verdict key id -> index in Witnesses
	verdicts    []*attest.Verifier
}

// LogPolicy names a log.
type LogPolicy struct {
	// URL is the base URL of the log's read API. Required unless given on
	// the command line (--log).
	URL string `toml:"url"`
	// Origin is the checkpoint origin line. Default: the name of VKey.
	Origin string `toml:"origin"`
	// VKey is the log's C2SP signed-note verifier key. Required.
	VKey string `toml:"vkey"`
}

// KeyPolicy names a DSSE verification key: a PKIX PEM public key inline or
// in a file (relative to the policy file's directory). At most one of the
// two.
type KeyPolicy struct {
	PublicKey     string `toml:"public_key"`
	PublicKeyFile string `toml:"public_key_file"`
}

// WitnessPolicy is one trusted witness.
type WitnessPolicy struct {
	// Name is how reports call the witness. Required.
	Name string `toml:"name"`
	// CosignatureVKey is the witness's signed-note verifier key for C2SP
	// tlog-cosignature (cosignature/v1) signatures. Required.
	CosignatureVKey string `toml:"cosignature_vkey"`
	// Verdict is the key that signs the witness's verdict entries (a
	// witness uses another key for verdicts than for cosigning).
	// Required.
	Verdict KeyPolicy `toml:"verdict"`
}

// LoadVerifyPolicy reads and checks the policy file at path.
func LoadVerifyPolicy(path string) (*VerifyPolicy, error) {
	data, err := readBounded(path, maxPolicyFile)
	if err != nil {
		return nil, fmt.Errorf("witness: policy: %w: %w", ErrPolicyFile, err)
	}
	return ParseVerifyPolicy(data, filepath.Dir(path))
}

// ParseVerifyPolicy parses a policy file's contents; key files are relative
// to dir. Unknown keys are rejected.
func ParseVerifyPolicy(data []byte, dir string) (*VerifyPolicy, error) {
	var p VerifyPolicy
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&p)
	if err != nil {
		return nil, fmt.Errorf("witness: policy: %w: %v", ErrPolicyFile, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("witness: policy: unknown keys %s: %w", strings.Join(keys, ", "), ErrPolicyFile)
	}
	if err := p.fill(dir); err != nil {
		return nil, err
	}
	return &p, nil
}

func (p *VerifyPolicy) fill(dir string) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("witness: policy: "+format+": %w", append(a, ErrPolicyFile)...)
	}
	if p.Log.VKey == "" {
		return bad("log.vkey is required")
	}
	v, err := note.NewVerifier(p.Log.VKey)
	if err != nil {
		return bad("log.vkey: %v", err)
	}
	p.logVerifier = v
	if p.Log.Origin == "" {
		p.Log.Origin = v.Name()
	}
	if p.Coordinator.PublicKey == "" && p.Coordinator.PublicKeyFile == "" {
		pub, err := NoteKeyPublic(p.Log.VKey)
		if err != nil {
			return bad("coordinator key defaults to the log key: %v", err)
		}
		if p.coordinator, err = attest.NewVerifier(pub); err != nil {
			return bad("coordinator: %v", err)
		}
	} else if p.coordinator, err = p.Coordinator.load(dir); err != nil {
		return bad("coordinator: %v", err)
	}
	if len(p.Witnesses) == 0 {
		return bad("at least one [[witness]] is required")
	}
	if p.WitnessQuorum == 0 {
		p.WitnessQuorum = len(p.Witnesses)
	}
	if p.MaxCosignatureAge < 0 {
		return bad("max_cosignature_age %v is negative", p.MaxCosignatureAge)
	}
	if p.WitnessQuorum < 1 || p.WitnessQuorum > len(p.Witnesses) {
		return bad("witness_quorum %d not in 1..%d", p.WitnessQuorum, len(p.Witnesses))
	}
	p.verdictKeys = map[string]int{}
	names := map[string]bool{}
	cosig := map[string]bool{}
	for i, w := range p.Witnesses {
		if w.Name == "" || names[w.Name] {
			return bad("witness %d: name empty or repeated", i+1)
		}
		names[w.Name] = true
		cv, err := fnote.NewVerifierForCosignatureV1(w.CosignatureVKey)
		if err != nil {
			return bad("witness %s: cosignature_vkey: %v", w.Name, err)
		}
		id := fmt.Sprintf("%s+%08x", cv.Name(), cv.KeyHash())
		// The verifier computes the key hash itself: a vkey naming another
		// hash would never match a cosignature line (C2SP signed-note).
		if !strings.HasPrefix(w.CosignatureVKey, id+"+") {
			return bad("witness %s: cosignature_vkey key hash is not %08x", w.Name, cv.KeyHash())
		}
		if cosig[id] || cv.Name() == v.Name() && cv.KeyHash() == v.KeyHash() {
			return bad("witness %s: cosignature key repeated or equal to the log key", w.Name)
		}
		cosig[id] = true
		p.cosigners = append(p.cosigners, cv)
		vk, err := w.Verdict.load(dir)
		if err != nil {
			return bad("witness %s: verdict key: %v", w.Name, err)
		}
		if _, dup := p.verdictKeys[vk.KeyID()]; dup {
			return bad("witness %s: verdict key repeated", w.Name)
		}
		p.verdictKeys[vk.KeyID()] = i
		p.verdicts = append(p.verdicts, vk)
	}
	if p.Agreement == nil {
		d := DefaultPolicy()
		p.Agreement = &d
	}
	if err := p.Agreement.Validate(); err != nil {
		return bad("agreement: %v", err)
	}
	return nil
}

// ParseLogCheckpoint parses a checkpoint note of the policy's log, signed
// by the log's key (a verify state file).
func (p *VerifyPolicy) ParseLogCheckpoint(data []byte) (Checkpoint, error) {
	return ParseCheckpoint(data, p.Log.Origin, p.logVerifier)
}

// verdictVerifier returns the verifier of a policy witness's verdict key.
func (p *VerifyPolicy) verdictVerifier(keyID string) (*attest.Verifier, string, bool) {
	i, ok := p.verdictKeys[keyID]
	if !ok {
		return nil, "", false
	}
	return p.verdicts[i], p.Witnesses[i].Name, true
}

// load returns the verifier the KeyPolicy names.
func (k KeyPolicy) load(dir string) (*attest.Verifier, error) {
	switch {
	case k.PublicKey != "" && k.PublicKeyFile != "":
		return nil, fmt.Errorf("both public_key and public_key_file")
	case k.PublicKey != "":
		return attest.ParsePublicPEM([]byte(k.PublicKey))
	case k.PublicKeyFile != "":
		path := k.PublicKeyFile
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		return attest.LoadVerifier(path)
	}
	return nil, fmt.Errorf("public_key or public_key_file is required")
}

// NoteKeyPublic returns the Ed25519 public key of a C2SP signed-note
// verifier key ("<name>+<hash>+<base64(0x01 || key)>").
func NoteKeyPublic(vkey string) (ed25519.PublicKey, error) {
	if _, err := note.NewVerifier(vkey); err != nil {
		return nil, fmt.Errorf("witness: note key: %w", err)
	}
	// Names hold no '+'; the key data is base64 and may: cut after name
	// and hash.
	_, rest, _ := strings.Cut(vkey, "+")
	_, data, _ := strings.Cut(rest, "+")
	b, err := base64.StdEncoding.DecodeString(data)
	if err != nil || len(b) != 1+ed25519.PublicKeySize || b[0] != 1 {
		return nil, fmt.Errorf("witness: note key is not an Ed25519 key")
	}
	return ed25519.PublicKey(b[1:]), nil
}

// readBounded reads a file of at most limit bytes.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s larger than %d bytes", path, limit)
	}
	return data, nil
}
