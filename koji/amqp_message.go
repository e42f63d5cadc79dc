package koji

// Parsing of the fedora-messaging messages Koji's koji-fedoramessaging
// plugin publishes, as their schemas define them
// (koji-fedoramessaging-messages: build.py BuildStateChangeV1, tag.py
// TagV1). Messages come from a public broker anyone can read and, through
// a misconfiguration, publish to: they are untrusted, size-limited and
// parsed strictly, and they only ever name a build id that the hub is then
// asked about.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Topics and schemas of the messages the listener binds to, without the
// environment prefix (fedora-messaging topic_prefix + ".").
const (
	TopicBuildStateChange  = "buildsys.build.state.change"
	TopicTag               = "buildsys.tag"
	SchemaBuildStateChange = "koji_fedoramessaging.build.BuildStateChangeV1"
	SchemaTag              = "koji_fedoramessaging.tag.TagV1"
	// DefaultTopicPrefix is Fedora's production prefix.
	DefaultTopicPrefix = "org.fedoraproject.prod"
	// DefaultInstance is the body's "instance" of Fedora's primary hub.
	DefaultInstance = "primary"
	// DefaultMaxMessageSize bounds a message body.
	DefaultMaxMessageSize = 256 << 10
)

// Errors of ParseMessage, checked with errors.Is. Every one means the
// message is acknowledged and nothing is enqueued.
var (
	// ErrMessageMalformed: the body is not the JSON its schema defines
	// (syntax, duplicate or unknown member, wrong type, missing field,
	// too large, wrong content type).
	ErrMessageMalformed = errors.New("koji: malformed message")
	// ErrUnknownSchema: the topic or the fedora_messaging_schema header is
	// not one the listener knows.
	ErrUnknownSchema = errors.New("koji: unknown message schema")
	// ErrOtherInstance: the message is about another Koji deployment
	// (another topic prefix such as staging, or another hub instance).
	ErrOtherInstance = errors.New("koji: message for another Koji instance")
	// ErrNotComplete: a valid state change that is not "build complete";
	// not a problem, just nothing to do.
	ErrNotComplete = errors.New("koji: not a build completion")
)

// MessageFilter says which messages are ours.
type MessageFilter struct {
	// TopicPrefix is the environment's topic prefix. Default
	// DefaultTopicPrefix ("org.fedoraproject.prod"); staging is
	// "org.fedoraproject.stg".
	TopicPrefix string
	// Instance is the hub instance the body must name. Default "primary".
	Instance string
	// MaxSize bounds the body. Default DefaultMaxMessageSize.
	MaxSize int
}

func (f MessageFilter) withDefaults() MessageFilter {
	if f.TopicPrefix == "" {
		f.TopicPrefix = DefaultTopicPrefix
	}
	if f.Instance == "" {
		f.Instance = DefaultInstance
	}
	if f.MaxSize <= 0 {
		f.MaxSize = DefaultMaxMessageSize
	}
	return f
}

// Topics returns the routing keys to bind: the build state change and tag
// topics under the prefix.
func (f MessageFilter) Topics() []string {
	f = f.withDefaults()
	return []string{f.TopicPrefix + "." + TopicBuildStateChange, f.TopicPrefix + "." + TopicTag}
}

// Announcement is what a message tells the listener: Koji build ID
// (named NVR) is complete, or was tagged.
type Announcement struct {
	BuildID int64
	NVR     string // name-version-release from the message, to check against the hub
	Topic   string
	Kind    string // "state-change" or "tag"
}

// Members of each body (the schemas' properties, and the members the
// plugin adds: url and files_base_url for state changes).
var (
	stateChangeMembers = []string{"name", "version", "release", "epoch", "attribute", "build_id", "owner", "instance", "url",
		"task_id", "task", "request", "old", "new", "creation_time", "completion_time", "files_base_url"}
	stateChangeRequired = []string{"name", "version", "release", "epoch", "attribute", "old", "new", "build_id",
		"task_id", "task", "request", "owner", "instance", "creation_time", "completion_time"}
	tagMembers = []string{"build_id", "name", "tag_id", "instance", "tag", "user", "version", "owner", "release"}
)

// ParseMessage reads one message: its routing key (topic), the
// fedora_messaging_schema header (schema; "" when absent), its content
// type and body. It returns the announcement of a completed or tagged
// build, or an error: ErrOtherInstance, ErrUnknownSchema,
// ErrMessageMalformed, or ErrNotComplete for a state change that is not a
// completion.
func ParseMessage(f MessageFilter, topic, schema, contentType string, body []byte) (*Announcement, error) {
	f = f.withDefaults()
	prefix, rest, ok := strings.Cut(topic, ".buildsys.")
	if !ok {
		return nil, fmt.Errorf("koji: message topic %q: %w", truncate(topic), ErrUnknownSchema)
	}
	if prefix != f.TopicPrefix {
		return nil, fmt.Errorf("koji: message topic %q, want prefix %q: %w", truncate(topic), f.TopicPrefix, ErrOtherInstance)
	}
	var kind, wantSchema string
	switch "buildsys." + rest {
	case TopicBuildStateChange:
		kind, wantSchema = "state-change", SchemaBuildStateChange
	case TopicTag:
		kind, wantSchema = "tag", SchemaTag
	default:
		return nil, fmt.Errorf("koji: message topic %q: %w", truncate(topic), ErrUnknownSchema)
	}
	// fedora-messaging sets fedora_messaging_schema to the message class's
	// entry point name (fedora_messaging/message.py); Koji's are in
	// koji-fedoramessaging-messages' pyproject.toml.
	if schema != wantSchema {
		return nil, fmt.Errorf("koji: message schema %q on %s, want %q: %w", truncate(schema), truncate(topic), wantSchema, ErrUnknownSchema)
	}
	if contentType != "" && contentType != "application/json" {
		return nil, fmt.Errorf("koji: message content type %q: %w", truncate(contentType), ErrMessageMalformed)
	}
	if len(body) > f.MaxSize {
		return nil, fmt.Errorf("koji: message body of %d bytes, limit %d: %w", len(body), f.MaxSize, ErrMessageMalformed)
	}
	v, err := decodeJSON(bytes.NewReader(body), int64(f.MaxSize))
	if err != nil {
		return nil, fmt.Errorf("koji: message on %s: %w: %w", topic, ErrMessageMalformed, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("koji: message on %s: body is not an object: %w", topic, ErrMessageMalformed)
	}
	a := &Announcement{Topic: topic, Kind: kind}
	if kind == "state-change" {
		err = parseStateChange(m, f, a)
	} else {
		err = parseTag(m, f, a)
	}
	if err != nil {
		return nil, fmt.Errorf("koji: message on %s: %w", topic, err)
	}
	return a, nil
}

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMessageMalformed}, args...)...)
}

// msgInt reads an integer member; null is (0, false).
func msgInt(m map[string]any, key string, nullable bool) (int64, bool, error) {
	switch x := m[key].(type) {
	case nil:
		if !nullable {
			return 0, false, bad("%s is null", key)
		}
		return 0, false, nil
	case json.Number:
		n, err := x.Int64()
		if err != nil {
			return 0, false, bad("%s is not an integer: %q", key, truncate(x.String()))
		}
		return n, true, nil
	}
	return 0, false, bad("%s has type %T, want integer", key, m[key])
}

// msgStr reads a string member that must be a non-empty RPM name part
// (no path or control characters).
func msgStr(m map[string]any, key string) (string, error) {
	s, ok := m[key].(string)
	if !ok {
		return "", bad("%s has type %T, want string", key, m[key])
	}
	if err := checkComponent(key, s); err != nil {
		return "", bad("%s: %v", key, err)
	}
	return s, nil
}

func parseStateChange(m map[string]any, f MessageFilter, a *Announcement) error {
	if err := onlyKeys("build state change", m, stateChangeMembers...); err != nil {
		return fmt.Errorf("%w: %w", ErrMessageMalformed, err)
	}
	for _, k := range stateChangeRequired {
		if _, ok := m[k]; !ok {
			return bad("required member %q missing", k)
		}
	}
	inst, ok := m["instance"].(string)
	if !ok {
		return bad("instance has type %T, want string", m["instance"])
	}
	if inst != f.Instance {
		return fmt.Errorf("instance %q, want %q: %w", truncate(inst), f.Instance, ErrOtherInstance)
	}
	attr, ok := m["attribute"].(string)
	if !ok {
		return bad("attribute has type %T, want string", m["attribute"])
	}
	newState, _, err := msgInt(m, "new", false)
	if err != nil {
		return err
	}
	if _, _, err := msgInt(m, "old", true); err != nil {
		return err
	}
	id, hasID, err := msgInt(m, "build_id", true)
	if err != nil {
		return err
	}
	// BuildStateChangeV1: the listener wants attribute == "state" and
	// new == COMPLETE (koji.BUILD_STATES).
	if attr != "state" || newState != int64(BuildComplete) {
		return fmt.Errorf("attribute %q new %d: %w", truncate(attr), newState, ErrNotComplete)
	}
	if !hasID || id <= 0 {
		return bad("completed build without a positive build_id")
	}
	nvr, err := nvrOf(m)
	if err != nil {
		return err
	}
	a.BuildID, a.NVR = id, nvr
	return nil
}

func parseTag(m map[string]any, f MessageFilter, a *Announcement) error {
	if err := onlyKeys("tag", m, tagMembers...); err != nil {
		return fmt.Errorf("%w: %w", ErrMessageMalformed, err)
	}
	inst, ok := m["instance"].(string)
	if !ok {
		return bad("instance has type %T, want string", m["instance"])
	}
	if inst != f.Instance {
		return fmt.Errorf("instance %q, want %q: %w", truncate(inst), f.Instance, ErrOtherInstance)
	}
	id, _, err := msgInt(m, "build_id", false)
	if err != nil {
		return err
	}
	if id <= 0 {
		return bad("build_id %d", id)
	}
	nvr, err := nvrOf(m)
	if err != nil {
		return err
	}
	a.BuildID, a.NVR = id, nvr
	return nil
}

func nvrOf(m map[string]any) (string, error) {
	var parts []string
	for _, k := range []string{"name", "version", "release"} {
		s, err := msgStr(m, k)
		if err != nil {
			return "", err
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "-"), nil
}
