package koji

import (
	"errors"
	"fmt"
	"strings"
)

// Koji's fault codes (koji/__init__.py, the GenericError family).
const (
	FaultGeneric       = 1000 // koji.GenericError, also "No such build"
	FaultAuth          = 1002 // koji.AuthError
	FaultServerOffline = 1014 // koji.ServerOffline
	FaultParameter     = 1019 // koji.ParameterError
)

// ErrNoSuchBuild matches (errors.Is) the fault Koji raises for an unknown
// build: GenericError (1000) "No such build: ..." (kojihub get_build and
// find_build_id with strict=True). Client methods also return it when a
// non-strict hub answers nil.
var ErrNoSuchBuild = errors.New("koji: no such build")

// ErrBadResult: a well-formed XML-RPC answer does not have the shape Koji
// documents for the method (a missing id, a string where an int belongs).
var ErrBadResult = errors.New("koji: unexpected result shape")

// Fault is an XML-RPC fault returned by the hub, kept with its code (no
// served Go XML-RPC library keeps it). Check with errors.As, or errors.Is
// against ErrNoSuchBuild.
type Fault struct {
	Code   int
	String string
}

func (f *Fault) Error() string {
	return fmt.Sprintf("koji: fault %d: %s", f.Code, f.String)
}

// Is reports a "No such build" GenericError as ErrNoSuchBuild.
func (f *Fault) Is(target error) bool {
	return target == ErrNoSuchBuild && f.Code == FaultGeneric && strings.HasPrefix(f.String, "No such build")
}

// BuildState is a Koji build state (koji.BUILD_STATES).
type BuildState int64

// Build states, as koji.BUILD_STATES numbers them.
const (
	BuildBuilding BuildState = 0
	BuildComplete BuildState = 1
	BuildDeleted  BuildState = 2
	BuildFailed   BuildState = 3
	BuildCanceled BuildState = 4
)

func (s BuildState) String() string {
	switch s {
	case BuildBuilding:
		return "BUILDING"
	case BuildComplete:
		return "COMPLETE"
	case BuildDeleted:
		return "DELETED"
	case BuildFailed:
		return "FAILED"
	case BuildCanceled:
		return "CANCELED"
	}
	return fmt.Sprintf("BuildState(%d)", int64(s))
}

// Build is the map getBuild and listBuilds return (kojihub get_build).
// Fields Koji may send as nil are pointers. Unknown members are ignored:
// Koji adds members between releases.
type Build struct {
	ID             int64
	PackageID      int64
	PackageName    string
	Name           string
	Version        string
	Release        string
	Epoch          *int64
	NVR            string
	State          BuildState
	Draft          bool
	VolumeID       int64
	VolumeName     string
	TaskID         *int64
	OwnerID        int64
	OwnerName      string
	CreationTime   string
	CreationTS     float64
	CompletionTime string   // "" when nil
	CompletionTS   *float64 // nil while building
	Source         string
	Extra          map[string]any
}

// RPM is one entry of listBuildRPMs (kojihub list_rpms).
type RPM struct {
	ID               int64
	Name             string
	Version          string
	Release          string
	Epoch            *int64
	Arch             string
	Draft            bool
	PayloadHash      string
	Size             int64
	BuildTime        int64
	BuildID          int64
	BuildrootID      *int64
	ExternalRepoID   int64
	ExternalRepoName string
	MetadataOnly     bool
	Extra            map[string]any
}

// NVRA is the RPM's name-version-release.arch, its file name without ".rpm".
func (r *RPM) NVRA() string {
	return r.Name + "-" + r.Version + "-" + r.Release + "." + r.Arch
}

// RPMSig is one entry of queryRPMSigs (kojihub query_rpm_sigs).
type RPMSig struct {
	RPMID   int64
	SigKey  string // lower-case key id; "" is the unsigned header
	SigHash string // md5 of the signature header
}

// Event is getLastEvent's answer.
type Event struct {
	ID int64
	TS float64 // seconds since the epoch
}

// fields reads typed members out of a decoded struct, remembering the
// first problem so a conversion reads as a list of assignments.
type fields struct {
	what string
	m    map[string]any
	err  error
}

func newFields(what string, v any) (*fields, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: %s is %T, want struct", ErrBadResult, what, v)
	}
	return &fields{what: what, m: m}, nil
}

func (f *fields) fail(key, want string) {
	if f.err == nil {
		f.err = fmt.Errorf("%w: %s member %q is %T, want %s", ErrBadResult, f.what, key, f.m[key], want)
	}
}

func (f *fields) missing(key string) {
	if f.err == nil {
		f.err = fmt.Errorf("%w: %s has no member %q", ErrBadResult, f.what, key)
	}
}

func (f *fields) int(key string, required bool) int64 {
	v, ok := f.m[key]
	if !ok || v == nil {
		if required {
			f.missing(key)
		}
		return 0
	}
	n, ok := v.(int64)
	if !ok {
		f.fail(key, "int")
	}
	return n
}

func (f *fields) optInt(key string) *int64 {
	v, ok := f.m[key]
	if !ok || v == nil {
		return nil
	}
	n, ok := v.(int64)
	if !ok {
		f.fail(key, "int or nil")
		return nil
	}
	return &n
}

func (f *fields) str(key string, required bool) string {
	v, ok := f.m[key]
	if !ok || v == nil {
		if required {
			f.missing(key)
		}
		return ""
	}
	s, ok := v.(string)
	if !ok {
		f.fail(key, "string")
	}
	return s
}

func (f *fields) bool(key string) bool {
	v, ok := f.m[key]
	if !ok || v == nil {
		return false
	}
	b, ok := v.(bool)
	if !ok {
		f.fail(key, "boolean")
	}
	return b
}

// float accepts a double or an int: Koji's date_part() values are doubles,
// but a whole number may arrive as an int from other hubs.
func (f *fields) optFloat(key string) *float64 {
	v, ok := f.m[key]
	if !ok || v == nil {
		return nil
	}
	switch x := v.(type) {
	case float64:
		return &x
	case int64:
		y := float64(x)
		return &y
	}
	f.fail(key, "double or nil")
	return nil
}

func (f *fields) extra(key string) map[string]any {
	v, ok := f.m[key]
	if !ok || v == nil {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		f.fail(key, "struct or nil")
	}
	return m
}

// BuildFromValue converts a decoded getBuild/listBuilds map. listBuilds
// names the id "build_id", getBuild sends both.
func BuildFromValue(v any) (*Build, error) {
	f, err := newFields("build", v)
	if err != nil {
		return nil, err
	}
	b := &Build{}
	if _, ok := f.m["id"]; ok {
		b.ID = f.int("id", true)
	} else {
		b.ID = f.int("build_id", true)
	}
	b.PackageID = f.int("package_id", false)
	b.PackageName = f.str("package_name", false)
	b.Name = f.str("name", true)
	b.Version = f.str("version", true)
	b.Release = f.str("release", true)
	b.Epoch = f.optInt("epoch")
	b.NVR = f.str("nvr", true)
	b.State = BuildState(f.int("state", true))
	b.Draft = f.bool("draft")
	b.VolumeID = f.int("volume_id", false)
	b.VolumeName = f.str("volume_name", false)
	b.TaskID = f.optInt("task_id")
	b.OwnerID = f.int("owner_id", false)
	b.OwnerName = f.str("owner_name", false)
	b.CreationTime = f.str("creation_time", false)
	if ts := f.optFloat("creation_ts"); ts != nil {
		b.CreationTS = *ts
	}
	b.CompletionTime = f.str("completion_time", false)
	b.CompletionTS = f.optFloat("completion_ts")
	b.Source = f.str("source", false)
	b.Extra = f.extra("extra")
	if f.err != nil {
		return nil, f.err
	}
	if b.PackageName == "" {
		b.PackageName = b.Name
	}
	return b, nil
}

// RPMFromValue converts one decoded listBuildRPMs map.
func RPMFromValue(v any) (*RPM, error) {
	f, err := newFields("rpm", v)
	if err != nil {
		return nil, err
	}
	r := &RPM{
		ID:               f.int("id", true),
		Name:             f.str("name", true),
		Version:          f.str("version", true),
		Release:          f.str("release", true),
		Epoch:            f.optInt("epoch"),
		Arch:             f.str("arch", true),
		Draft:            f.bool("draft"),
		PayloadHash:      f.str("payloadhash", false),
		Size:             f.int("size", false),
		BuildTime:        f.int("buildtime", false),
		BuildID:          f.int("build_id", false),
		BuildrootID:      f.optInt("buildroot_id"),
		ExternalRepoID:   f.int("external_repo_id", false),
		ExternalRepoName: f.str("external_repo_name", false),
		MetadataOnly:     f.bool("metadata_only"),
		Extra:            f.extra("extra"),
	}
	if f.err != nil {
		return nil, f.err
	}
	return r, nil
}

// RPMSigFromValue converts one decoded queryRPMSigs map.
func RPMSigFromValue(v any) (*RPMSig, error) {
	f, err := newFields("rpm signature", v)
	if err != nil {
		return nil, err
	}
	s := &RPMSig{RPMID: f.int("rpm_id", true), SigKey: f.str("sigkey", true), SigHash: f.str("sighash", false)}
	if f.err != nil {
		return nil, f.err
	}
	return s, nil
}

// EventFromValue converts getLastEvent's map.
func EventFromValue(v any) (*Event, error) {
	f, err := newFields("event", v)
	if err != nil {
		return nil, err
	}
	e := &Event{ID: f.int("id", true)}
	ts := f.optFloat("ts")
	if ts == nil && f.err == nil {
		f.missing("ts")
	}
	if f.err != nil {
		return nil, f.err
	}
	e.TS = *ts
	return e, nil
}

func listOf[T any](what string, v any, conv func(any) (*T, error)) ([]T, error) {
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: %s result is %T, want array", ErrBadResult, what, v)
	}
	out := make([]T, 0, len(arr))
	for i, e := range arr {
		x, err := conv(e)
		if err != nil {
			return nil, fmt.Errorf("%s entry %d: %w", what, i, err)
		}
		out = append(out, *x)
	}
	return out, nil
}
