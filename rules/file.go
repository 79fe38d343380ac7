// Package rules holds AWS IoT topic rule files: loading and resolving them for an environment,
// evaluating them on messages with the iotsql engine, linting and testing them, and planning and
// applying them to AWS IoT. A rule file is the CreateTopicRule payload plus the rule's name, so what is
// tested locally is exactly what deploys.
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

	"github.com/aws/aws-sdk-go-v2/service/iot/types"
	"sigs.k8s.io/yaml"
)

// File is one rule file as written: the rule's name and its CreateTopicRule payload, with environment
// placeholders ({{account}} …) not yet resolved.
type File struct {
	// Path is where the file was read from, for messages.
	Path string
	// Name is the rule name.
	Name string
	// Payload is the topicRulePayload of the CreateTopicRule API.
	Payload types.TopicRulePayload
}

// FileError is a problem with a rule or test file as a whole, or with one of its fields.
type FileError struct {
	Path string
	Err  error
}

func (e *FileError) Error() string { return e.Path + ": " + e.Err.Error() }
func (e *FileError) Unwrap() error { return e.Err }

// IsRuleFile reports whether a file name is a rule file: .json, .yaml or .yml, and not a test file.
func IsRuleFile(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".json", ".yaml", ".yml":
		return !IsTestFile(name)
	}
	return false
}

// IsTestFile reports whether a file name is a rule test file (*.test.yaml, *.test.yml, *.test.json).
func IsTestFile(name string) bool {
	base := strings.ToLower(filepath.Base(name))
	for _, suf := range []string{".test.yaml", ".test.yml", ".test.json"} {
		if strings.HasSuffix(base, suf) {
			return true
		}
	}
	return false
}

// toJSON converts YAML to JSON (JSON files pass through unchanged), so one strict decoder reads both.
func toJSON(path string, data []byte) ([]byte, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml":
		j, err := yaml.YAMLToJSON(data)
		if err != nil {
			return nil, fmt.Errorf("invalid YAML: %w", err)
		}
		return j, nil
	}
	return data, nil
}

// jsonSyntaxError adds line:column to a JSON syntax error.
func jsonSyntaxError(data []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line, col := lineCol(data, int(se.Offset)-1) // Offset is just past the bad byte
		return fmt.Errorf("invalid JSON at %d:%d: %s", line, col, se.Error())
	}
	return fmt.Errorf("invalid JSON: %w", err)
}

func lineCol(data []byte, offset int) (line, col int) {
	if offset < 0 {
		offset = 0
	}
	if offset > len(data) {
		offset = len(data)
	}
	before := data[:offset]
	line = bytes.Count(before, []byte("\n")) + 1
	col = offset - bytes.LastIndexByte(before, '\n')
	return line, col
}

// decodeObject decodes data into a generic JSON object (numbers kept as json.Number).
func decodeObject(data []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return nil, jsonSyntaxError(data, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("invalid JSON: more than one value")
	}
	obj, ok := x.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("must be an object, not %s", jsonKind(x))
	}
	return obj, nil
}

// ParseFile reads a rule file's contents. Unknown fields, wrong types and a missing name or sql are
// errors naming the file and the field.
func ParseFile(path string, data []byte) (*File, error) {
	f, err := parseFile(path, data)
	if err != nil {
		return nil, &FileError{Path: path, Err: err}
	}
	return f, nil
}

func parseFile(path string, data []byte) (*File, error) {
	j, err := toJSON(path, data)
	if err != nil {
		return nil, err
	}
	obj, err := decodeObject(j)
	if err != nil {
		return nil, err
	}
	f := &File{Path: path}
	switch name := obj["name"].(type) {
	case string:
		f.Name = name
	case nil:
		return nil, &FieldError{"name", "missing: every rule file names its rule"}
	default:
		return nil, &FieldError{"name", fmt.Sprintf("must be a string, not %s", jsonKind(name))}
	}
	delete(obj, "name")
	if err := decodeValue("", obj, reflectValue(&f.Payload)); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) && fe.Path == "" && strings.HasPrefix(fe.Msg, "unknown field") {
			fe.Msg = strings.Replace(fe.Msg, "(known: ", "(known: name, ", 1)
		}
		return nil, err
	}
	if f.Payload.Sql == nil || strings.TrimSpace(*f.Payload.Sql) == "" {
		return nil, &FieldError{"sql", "missing: every rule needs a SELECT statement"}
	}
	return f, nil
}

// ReadFile reads and parses one rule file.
func ReadFile(path string) (*File, error) {
	data, err := os.ReadFile(path) // #nosec G304 -- a rule file the user names on the command line
	if err != nil {
		return nil, err
	}
	return ParseFile(path, data)
}

// LoadDir reads every rule file directly in dir (not its subdirectories), sorted by path. It reads all
// of them and reports every bad file, joined; a rule name used twice is an error too.
func LoadDir(dir string) ([]*File, error) {
	paths, err := ruleFilePaths(dir)
	if err != nil {
		return nil, err
	}
	var files []*File
	var errs []error
	seen := map[string]string{}
	for _, p := range paths {
		f, err := ReadFile(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if prev, dup := seen[f.Name]; dup {
			errs = append(errs, &FileError{Path: p, Err: fmt.Errorf("rule %q is also defined in %s", f.Name, prev)})
			continue
		}
		seen[f.Name] = p
		files = append(files, f)
	}
	return files, errors.Join(errs...)
}

func ruleFilePaths(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading rule directory: %w", err)
	}
	var paths []string
	for _, e := range entries {
		if !e.IsDir() && IsRuleFile(e.Name()) {
			paths = append(paths, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(paths)
	if len(paths) == 0 {
		return nil, fmt.Errorf("%s: no rule files (*.json, *.yaml, *.yml)", dir)
	}
	return paths, nil
}

// JSON returns the file's rule in AWS's shape: name first, then the topicRulePayload fields.
func (f *File) JSON() Object { return ruleJSON(f.Name, f.Payload) }

func ruleJSON(name string, p types.TopicRulePayload) Object {
	o := Object{{"name", name}}
	body, _ := encodeValue(reflectValue(&p))
	return append(o, body.(Object)...)
}
