package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/thingpipe/thingpipe/rules/iotsql"
)

// SampleMessage is a device message stored in a file (testdata/messages/*.json): the MQTT topic, the
// publishing client and the payload. payload holds a JSON payload as JSON; payloadText holds any other
// payload as text.
type SampleMessage struct {
	Topic     string          `json:"topic,omitempty"`
	ClientID  string          `json:"clientId,omitempty"`
	Principal string          `json:"principal,omitempty"`
	Payload   json.RawMessage `json:"payload,omitempty"`
	// PayloadText is a payload that is not JSON, sent as these bytes.
	PayloadText *string `json:"payloadText,omitempty"`
	// Timestamp fixes what timestamp() returns, in milliseconds since the epoch.
	Timestamp int64 `json:"timestamp,omitempty"`
}

// DefaultTestTime is what timestamp() returns in tests and `rules run` when a message does not fix it,
// so outputs are reproducible: 2026-01-01T00:00:00Z.
var DefaultTestTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Validate reports a missing topic or an ambiguous payload.
func (s *SampleMessage) Validate() error {
	switch {
	case s.Topic == "":
		return &FieldError{"topic", "missing"}
	case strings.ContainsAny(s.Topic, "+#"):
		return &FieldError{"topic", fmt.Sprintf("%q is a topic filter; a message is published to a concrete topic", s.Topic)}
	case len(s.Payload) > 0 && s.PayloadText != nil:
		return &FieldError{"payload", "give payload or payloadText, not both"}
	}
	return nil
}

// Bytes is the payload as published.
func (s *SampleMessage) Bytes() []byte {
	if s.PayloadText != nil {
		return []byte(*s.PayloadText)
	}
	if len(s.Payload) == 0 {
		return nil
	}
	// Compact, as a device would send it; the payload was valid JSON when it was decoded.
	var b bytes.Buffer
	if err := json.Compact(&b, s.Payload); err != nil {
		return s.Payload
	}
	return b.Bytes()
}

// Message builds the evaluation context. Timestamps default to DefaultTestTime and newuuid() returns
// a deterministic sequence, so rule outputs are reproducible.
func (s *SampleMessage) Message(env Env) *iotsql.Message {
	ts := DefaultTestTime
	if s.Timestamp != 0 {
		ts = time.UnixMilli(s.Timestamp).UTC()
	}
	n := 0
	return &iotsql.Message{
		Topic:     s.Topic,
		Payload:   s.Bytes(),
		ClientID:  s.ClientID,
		Principal: s.Principal,
		AccountID: env.Account,
		Timestamp: ts,
		NewUUID: func() string {
			n++
			return fmt.Sprintf("00000000-0000-4000-8000-%012d", n)
		},
	}
}

// strictDecode decodes JSON into v, rejecting unknown fields.
func strictDecode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return jsonSyntaxError(data, err)
		}
		return err
	}
	return nil
}

// ReadSampleMessage reads one message file (JSON or YAML).
func ReadSampleMessage(path string) (*SampleMessage, error) {
	data, err := os.ReadFile(path) // #nosec G304 -- a sample message file the user names on the command line
	if err != nil {
		return nil, err
	}
	j, err := toJSON(path, data)
	if err != nil {
		return nil, &FileError{Path: path, Err: err}
	}
	var s SampleMessage
	if err := strictDecode(j, &s); err != nil {
		return nil, &FileError{Path: path, Err: err}
	}
	if err := s.Validate(); err != nil {
		return nil, &FileError{Path: path, Err: err}
	}
	return &s, nil
}

// NamedMessage is a sample message and the file it came from.
type NamedMessage struct {
	Path string
	*SampleMessage
}

// LoadSampleMessages reads every message file in dir (or the one file dir names), sorted by path.
func LoadSampleMessages(dir string) ([]NamedMessage, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	paths := []string{dir}
	if st.IsDir() {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, err
		}
		paths = paths[:0]
		for _, e := range entries {
			switch strings.ToLower(filepath.Ext(e.Name())) {
			case ".json", ".yaml", ".yml":
				if !e.IsDir() {
					paths = append(paths, filepath.Join(dir, e.Name()))
				}
			}
		}
		sort.Strings(paths)
	}
	var out []NamedMessage
	var errs []error
	for _, p := range paths {
		m, err := ReadSampleMessage(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, NamedMessage{p, m})
	}
	return out, errors.Join(errs...)
}
