package events

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const corpusDir = "../testdata/bad"

type decoderFunc func([]byte) error

var decoders = map[string]decoderFunc{
	"provisioning": func(b []byte) error { _, err := DecodeProvisioning(b); return err },
	"binding":      func(b []byte) error { _, err := DecodeBindingRequest(b); return err },
	"telemetry":    func(b []byte) error { _, err := DecodeTelemetry("dev-42", b); return err },
	"envelope":     func(b []byte) error { _, err := DecodeEnvelope(b); return err },
}

// want is one expectation: kind nil means the decoder must accept the file.
type want struct {
	kind  error
	field string
}

var accept = want{}

// all applies the same expectation to every decoder.
func all(w want) map[string]want {
	m := map[string]want{}
	for name := range decoders {
		m[name] = w
	}
	return m
}

func only(decoder string, w want) map[string]want { return map[string]want{decoder: w} }

// corpusExpectations says what each decoder does with each file of testdata/bad.
var corpusExpectations = map[string]map[string]want{
	"not-json.txt":               all(want{kind: ErrNotJSON}),
	"empty.json":                 all(want{kind: ErrNotJSON}),
	"whitespace-only.json":       all(want{kind: ErrNotJSON}),
	"truncated.json":             all(want{kind: ErrNotJSON}),
	"array-top-level.json":       all(want{kind: ErrWrongType}),
	"string-top-level.json":      all(want{kind: ErrWrongType}),
	"null-top-level.json":        all(want{kind: ErrWrongType}),
	"trailing-data.json":         all(want{kind: ErrNotJSON}),
	"deep-nesting.json":          all(want{kind: ErrTooDeep, field: "a" + strings.Repeat("[]", MaxDepth-1)}),
	"deep-nesting-unclosed.json": all(want{kind: ErrWrongType}),
	"invalid-utf8.json":          all(want{kind: ErrInvalidUTF8}),
	"invalid-utf8-overlong.json": all(want{kind: ErrInvalidUTF8}),
	"size-128kib-exact.json":     only("telemetry", accept),
	"size-128kib-plus-one.json":  only("telemetry", accept), // AWS IoT refuses it; decoders leave room for fields rules add
	"size-129kib-plus-one.json":  all(want{kind: ErrTooLarge}),
	"size-256kib.json":           all(want{kind: ErrTooLarge}),
	"duplicate-keys.json":        all(want{kind: ErrDuplicateKey, field: "userId"}),
	"huge-number.json":           all(want{kind: ErrNumberRange, field: "temperature"}),
	"long-number.json":           all(want{kind: ErrNumberRange, field: "temperature"}),
	"nan-strings.json":           only("telemetry", accept), // decodes; Number("temperature") rejects it, see TestTelemetryNumber
	"nan-literal.json":           all(want{kind: ErrNotJSON}),
	"unquoted-keys.json":         all(want{kind: ErrNotJSON}),
	"single-quotes.json":         all(want{kind: ErrNotJSON}),
	"bom-prefix.json":            all(want{kind: ErrNotJSON}),

	"registry-ok.json":                      {"provisioning": accept, "binding": {kind: ErrMissingField, field: "requestId"}, "telemetry": accept},
	"registry-extra-fields.json":            only("provisioning", accept),
	"registry-missing-thingname.json":       only("provisioning", want{ErrMissingField, "thingName"}),
	"registry-missing-timestamp.json":       only("provisioning", want{ErrMissingField, "timestamp"}),
	"registry-timestamp-string.json":        only("provisioning", want{ErrWrongType, "timestamp"}),
	"registry-timestamp-float.json":         only("provisioning", want{ErrNumberRange, "timestamp"}),
	"registry-timestamp-huge.json":          only("provisioning", want{ErrNumberRange, "timestamp"}),
	"registry-timestamp-negative.json":      only("provisioning", want{ErrNumberRange, "timestamp"}),
	"registry-bad-operation.json":           only("provisioning", want{ErrInvalidValue, "operation"}),
	"registry-thingname-number.json":        only("provisioning", want{ErrWrongType, "thingName"}),
	"registry-thingname-wildcard-plus.json": only("provisioning", want{ErrBadThingName, "thingName"}),
	"registry-thingname-wildcard-hash.json": only("provisioning", want{ErrBadThingName, "thingName"}),
	"registry-thingname-slash.json":         only("provisioning", want{ErrBadThingName, "thingName"}),
	"registry-thingname-control.json":       only("provisioning", want{ErrInvalidValue, "thingName"}),
	"registry-thingname-newline.json":       only("provisioning", want{ErrInvalidValue, "thingName"}),
	"registry-thingname-unicode.json":       only("provisioning", want{ErrBadThingName, "thingName"}),
	"registry-thingname-space.json":         only("provisioning", want{ErrBadThingName, "thingName"}),
	"registry-thingname-empty.json":         only("provisioning", want{ErrInvalidValue, "thingName"}),
	"registry-thingname-129.json":           only("provisioning", want{ErrBadThingName, "thingName"}),
	"registry-attributes-wrong-type.json":   only("provisioning", want{ErrWrongType, "attributes.mac"}),
	"registry-attributes-array.json":        only("provisioning", want{ErrWrongType, "attributes"}),
	"registry-eventtype-number.json":        only("provisioning", want{ErrWrongType, "eventType"}),
	"registry-versionnumber-huge.json":      only("provisioning", want{ErrNumberRange, "versionNumber"}),

	"presence-ok.json":                 only("provisioning", accept),
	"presence-disconnected.json":       only("provisioning", accept),
	"presence-missing-clientid.json":   only("provisioning", want{ErrMissingField, "clientId"}),
	"presence-clientid-wildcard.json":  only("provisioning", want{ErrBadThingName, "clientId"}),
	"presence-clientid-slash.json":     only("provisioning", want{ErrBadThingName, "clientId"}),
	"presence-bad-eventtype.json":      only("provisioning", want{ErrUnknownType, "eventType"}),
	"presence-timestamp-string.json":   only("provisioning", want{ErrWrongType, "timestamp"}),
	"presence-boolean-wrong-type.json": only("provisioning", want{ErrWrongType, "clientInitiatedDisconnect"}),

	"binding-ok.json":                  {"binding": accept, "provisioning": {kind: ErrMissingField, field: "eventType"}},
	"binding-extra-fields.json":        only("binding", accept),
	"binding-missing-requestid.json":   only("binding", want{ErrMissingField, "requestId"}),
	"binding-missing-userid.json":      only("binding", want{ErrMissingField, "userId"}),
	"binding-missing-thingname.json":   only("binding", want{ErrMissingField, "thingName"}),
	"binding-thingname-number.json":    only("binding", want{ErrWrongType, "thingName"}),
	"binding-thingname-wildcard.json":  only("binding", want{ErrBadThingName, "thingName"}),
	"binding-requestid-object.json":    only("binding", want{ErrWrongType, "requestId"}),
	"binding-userid-slash.json":        only("binding", want{ErrInvalidValue, "userId"}),
	"binding-userid-too-long.json":     only("binding", want{ErrInvalidValue, "userId"}),
	"binding-other-user.json":          only("binding", accept), // the topic's user wins: see TestBindingTopicWins
	"binding-topic-malformed.json":     only("binding", want{ErrInvalidValue, "topic"}),
	"binding-topic-wildcard-user.json": only("binding", want{ErrInvalidValue, "topic"}),

	"telemetry-ok.json":           {"telemetry": accept, "envelope": {kind: ErrMissingField, field: "specversion"}},
	"telemetry-nested.json":       only("telemetry", accept),
	"telemetry-ts-string.json":    only("telemetry", want{ErrWrongType, "ts"}),
	"telemetry-ts-negative.json":  only("telemetry", want{ErrNumberRange, "ts"}),
	"telemetry-empty-object.json": {"telemetry": accept, "provisioning": {kind: ErrMissingField, field: "eventType"}},
	"telemetry-metric-bool.json":  only("telemetry", accept),
	"telemetry-metric-null.json":  only("telemetry", accept),
}

func corpusFiles(t testing.TB) []string {
	t.Helper()
	entries, err := os.ReadDir(corpusDir)
	if err != nil {
		t.Fatalf("reading corpus: %v", err)
	}
	var files []string
	for _, e := range entries {
		if e.IsDir() || e.Name() == "README.md" {
			continue
		}
		files = append(files, e.Name())
	}
	return files
}

func TestCorpus(t *testing.T) {
	files := corpusFiles(t)
	if len(files) < 60 {
		t.Fatalf("corpus has %d files, want the full set", len(files))
	}
	for _, name := range files {
		exp, ok := corpusExpectations[name]
		if !ok {
			t.Errorf("%s: no expectation; add it to corpusExpectations", name)
			continue
		}
		b, err := os.ReadFile(filepath.Join(corpusDir, name))
		if err != nil {
			t.Fatal(err)
		}
		for dname, decode := range decoders {
			err := decode(b)
			w, stated := exp[dname]
			if err != nil {
				var de *DecodeError
				if !errors.As(err, &de) {
					t.Errorf("%s/%s: error %v is not a *DecodeError", name, dname, err)
				}
				if !IsPermanent(err) {
					t.Errorf("%s/%s: error %v is not permanent", name, dname, err)
				}
			}
			if !stated {
				continue
			}
			switch {
			case w.kind == nil && err != nil:
				t.Errorf("%s/%s: want accepted, got %v", name, dname, err)
			case w.kind != nil && err == nil:
				t.Errorf("%s/%s: want %v, got accepted", name, dname, w.kind)
			case w.kind != nil && !errors.Is(err, w.kind):
				t.Errorf("%s/%s: want %v, got %v", name, dname, w.kind, err)
			case w.kind != nil:
				var de *DecodeError
				errors.As(err, &de)
				if de.Field != w.field {
					t.Errorf("%s/%s: error names field %q, want %q (%v)", name, dname, de.Field, w.field, err)
				}
				if w.field != "" && !strings.Contains(err.Error(), w.field) {
					t.Errorf("%s/%s: message %q does not name field %q", name, dname, err, w.field)
				}
			}
		}
	}
	for name := range corpusExpectations {
		if _, err := os.Stat(filepath.Join(corpusDir, name)); err != nil {
			t.Errorf("expectation for missing corpus file %s", name)
		}
	}
}
