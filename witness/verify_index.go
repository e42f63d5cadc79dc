package witness

// Lookup names for what `skyline verify` needs besides the entries of one
// NVR: the enrolments and revocations of the keys that signed them, and the
// circuit breaker's alarms and clearings. The log's NVR index is untrusted
// (ARCHITECTURE.md "Trust and failure rules"): verify checks every entry it
// gets against the signed tree and its signer, and relies on the witnesses
// for completeness. The names are valid NVRs so that the one lookup route
// (GET /lookup/{nvr}) serves them.

import (
	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/coord"
	"github.com/fedora-skyline/skyline/log"
)

// Lookup names of the non-build index (docs/verify.md "What the log must
// index").
const (
	// AlarmLookup indexes every alarm and alarm-clear entry.
	AlarmLookup = "skyline-alarms-0"
	// keyLookupPrefix + key id indexes a key's enrolment and revocation.
	keyLookupPrefix = "skyline-key-"
)

// Index kinds of the entries IndexKeys adds.
const (
	IndexEnrolment  = "enrolment"
	IndexRevocation = "revocation"
	IndexAlarm      = "alarm"
	IndexAlarmClear = "alarm-clear"
)

// KeyLookup returns the lookup name under which a key's enrolment and
// revocation are indexed.
func KeyLookup(keyID string) string { return keyLookupPrefix + keyID }

// IndexKeys returns the index keys verify needs on top of the per-NVR ones
// of coord.Indexer: enrolments and revocations under KeyLookup(key id),
// alarms and their clearings under AlarmLookup.
func IndexKeys(e *attest.Entry) []log.IndexKey {
	switch v := e.Value.(type) {
	case *attest.Enrolment:
		return []log.IndexKey{{NVR: KeyLookup(v.KeyID), Type: IndexEnrolment}}
	case *attest.Revocation:
		return []log.IndexKey{{NVR: KeyLookup(v.KeyID), Type: IndexRevocation}}
	case *attest.Alarm:
		return []log.IndexKey{{NVR: AlarmLookup, Type: IndexAlarm}}
	case *attest.AlarmClear:
		return []log.IndexKey{{NVR: AlarmLookup, Type: IndexAlarmClear}}
	}
	return nil
}

// Indexer is coord.Indexer plus IndexKeys: the log.Indexer a log must run
// for `skyline verify` to find keys and alarms.
func Indexer(entry []byte) ([]byte, []log.IndexKey, error) {
	dedup, keys, err := coord.Indexer(entry)
	if err != nil {
		return nil, nil, err
	}
	e, err := attest.Parse(entry, attest.ParseOptions{})
	if err != nil {
		return nil, nil, err
	}
	return dedup, append(keys, IndexKeys(e)...), nil
}
