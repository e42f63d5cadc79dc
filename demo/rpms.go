package demo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/fedora-skyline/skyline/builder"
)

// childPath is the PATH of the rpm tools the demo runs itself.
const childPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

var versionLine = regexp.MustCompile(`(?m)^Version:[ \t]+\S+$`)

// buildSRPM writes the spec of p (testdata/specs/SPEC with its Version:
// replaced when p.Version is set) and builds its SRPM into outDir. It
// returns the SRPM's path.
func buildSRPM(ctx context.Context, root, work, outDir string, p Package) (string, error) {
	spec, err := os.ReadFile(filepath.Join(root, "testdata", "specs", p.Spec))
	if err != nil {
		return "", fmt.Errorf("demo: spec: %w", err)
	}
	if p.Version != "" {
		if !versionLine.Match(spec) {
			return "", fmt.Errorf("demo: %s has no Version: line", p.Spec)
		}
		spec = versionLine.ReplaceAll(spec, []byte("Version:        "+p.Version))
	}
	dir := filepath.Join(work, p.NVR)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("demo: %w", err)
	}
	specPath := filepath.Join(dir, p.Spec)
	if err := os.WriteFile(specPath, spec, 0o644); err != nil {
		return "", fmt.Errorf("demo: %w", err)
	}
	r, err := runCmd(ctx, "rpmbuild", "-bs", "--nodeps",
		"--define", "_topdir "+filepath.Join(dir, "top"),
		"--define", "_sourcedir "+dir,
		"--define", "_srcrpmdir "+outDir,
		specPath)
	if err != nil {
		return "", err
	}
	srpm := filepath.Join(outDir, p.NVR+".src.rpm")
	if _, err := os.Stat(srpm); r.Exit != 0 || err != nil {
		return "", fmt.Errorf("demo: rpmbuild -bs %s (exit %d): %s", p.Spec, r.Exit, lastLines(r.Stderr, 10))
	}
	return srpm, nil
}

// rebuild rebuilds srpm the way the builders' rpmbuild backend does
// (builder.Rpmbuild: the same macros, SOURCE_DATE_EPOCH from the SRPM,
// the job's top directory bind-mounted at buildPath in a private mount
// namespace), with extra --define knobs, and moves the binary RPMs into
// outDir. It stands for Koji's build of the package: honest without
// knobs, tampered with them.
func rebuild(ctx context.Context, srpm, buildPath, work, outDir string, knobs map[string]string) error {
	epoch, err := builder.SourceDateEpoch(ctx, srpm, childPath)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	top := filepath.Join(work, "top")
	for _, d := range []string{filepath.Join(top, "tmp"), buildPath, outDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	argv := []string{"unshare"}
	if os.Geteuid() != 0 {
		// As the backend does: an unprivileged user may make a mount
		// namespace inside a user namespace of its own.
		argv = append(argv, "--user", "--map-root-user")
	}
	argv = append(argv, "--mount", "--propagation", "private", "sh", "-ec",
		`mount --bind "$1" "$2"; shift 2; exec "$@"`, "demo-build", top, buildPath,
		"rpmbuild", "--rebuild", "--nodeps")
	for _, k := range sortedKeys(knobs) {
		argv = append(argv, "--define", k+" "+knobs[k])
	}
	argv = append(argv,
		"--define", "_topdir "+buildPath,
		"--define", "_tmppath "+buildPath+"/tmp",
		"--define", "_buildhost skyline",
		"--define", "use_source_date_epoch_as_buildtime 1",
		"--define", "clamp_mtime_to_source_date_epoch 1",
		srpm)
	r, err := runCmdEnv(ctx, []string{"PATH=" + childPath, "HOME=" + work, "LANG=C.UTF-8", "TZ=UTC",
		"SOURCE_DATE_EPOCH=" + strconv.FormatInt(epoch, 10)}, argv...)
	if err != nil {
		return err
	}
	if r.Exit != 0 {
		return fmt.Errorf("demo: rebuild %s (exit %d): %s", filepath.Base(srpm), r.Exit, lastLines(r.Stdout+r.Stderr, 15))
	}
	n := 0
	err = filepath.WalkDir(filepath.Join(top, "RPMS"), func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || !strings.HasSuffix(path, ".rpm") {
			return err
		}
		n++
		return os.Rename(path, filepath.Join(outDir, d.Name()))
	})
	if err != nil || n == 0 {
		return fmt.Errorf("demo: rebuild %s: %d RPMs: %v", filepath.Base(srpm), n, err)
	}
	return nil
}

// fileSHA256 returns the lowercase hex SHA-256 of a file.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("demo: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("demo: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
