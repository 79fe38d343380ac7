package deploy

import (
	_ "embed"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

//go:embed cloudformation/thingpipe.yaml
var templateBody []byte

// Template returns the CloudFormation template Deploy deploys (a copy: callers may change it freely).
func Template() []byte { return append([]byte(nil), templateBody...) }

// TemplateError is a template that cannot be read: bad YAML, an unknown CloudFormation tag, a
// section of the wrong shape. Line and Column are 1-based; 0 when unknown.
type TemplateError struct {
	Line, Column int
	Msg          string
}

func (e *TemplateError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("template line %d column %d: %s", e.Line, e.Column, e.Msg)
	}
	return "template: " + e.Msg
}

// maxTemplateDepth bounds nesting (and alias expansion) so a hostile template cannot exhaust the stack.
const maxTemplateDepth = 64

// parseTemplate reads a CloudFormation template (YAML or JSON) into plain Go values: maps, slices,
// strings, numbers, booleans. Short-form intrinsic functions become their long form, so
// `!GetAtt Queue.Arn` reads as {"Fn::GetAtt": ["Queue", "Arn"]} and `!Ref X` as {"Ref": "X"}.
func parseTemplate(src []byte) (map[string]any, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, &TemplateError{Msg: err.Error()}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, &TemplateError{Msg: "empty template"}
	}
	v, err := convertNode(doc.Content[0], 0)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		n := doc.Content[0]
		return nil, &TemplateError{Line: n.Line, Column: n.Column, Msg: "template is not a mapping"}
	}
	return m, nil
}

func convertNode(n *yaml.Node, depth int) (any, error) {
	if depth > maxTemplateDepth {
		return nil, &TemplateError{Line: n.Line, Column: n.Column, Msg: "nested too deeply"}
	}
	if n.Kind == yaml.AliasNode {
		return convertNode(n.Alias, depth+1)
	}
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		return convertIntrinsic(n, depth)
	}
	return convertPlain(n, depth)
}

func convertPlain(n *yaml.Node, depth int) (any, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "" || n.Tag == "!" {
			return n.Value, nil
		}
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, &TemplateError{Line: n.Line, Column: n.Column, Msg: err.Error()}
		}
		return v, nil
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := convertNode(c, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.MappingNode:
		out := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, vn := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				return nil, &TemplateError{Line: k.Line, Column: k.Column, Msg: "mapping key is not a string"}
			}
			if k.Value == "<<" {
				return nil, &TemplateError{Line: k.Line, Column: k.Column, Msg: "YAML merge keys are not supported by CloudFormation"}
			}
			if _, dup := out[k.Value]; dup {
				return nil, &TemplateError{Line: k.Line, Column: k.Column, Msg: fmt.Sprintf("duplicate key %q", k.Value)}
			}
			v, err := convertNode(vn, depth+1)
			if err != nil {
				return nil, err
			}
			out[k.Value] = v
		}
		return out, nil
	default:
		return nil, &TemplateError{Line: n.Line, Column: n.Column, Msg: "unexpected YAML node"}
	}
}

// intrinsicName maps a short-form tag to its long-form key, or "" for a tag CloudFormation lacks.
func intrinsicName(tag string) string {
	switch name := strings.TrimPrefix(tag, "!"); name {
	case "Ref", "Condition":
		return name
	case "GetAtt", "Sub", "Join", "Select", "Split", "If", "Not", "Equals", "And", "Or",
		"FindInMap", "Base64", "Cidr", "ImportValue", "GetAZs", "Transform", "Length", "ToJsonString":
		return "Fn::" + name
	default:
		return ""
	}
}

func convertIntrinsic(n *yaml.Node, depth int) (any, error) {
	key := intrinsicName(n.Tag)
	if key == "" {
		return nil, &TemplateError{Line: n.Line, Column: n.Column, Msg: fmt.Sprintf("unknown CloudFormation tag %s", n.Tag)}
	}
	var arg any
	switch n.Kind {
	case yaml.ScalarNode:
		arg = n.Value
		if key == "Fn::GetAtt" {
			res, attr, ok := strings.Cut(n.Value, ".")
			if !ok || res == "" || attr == "" {
				return nil, &TemplateError{Line: n.Line, Column: n.Column, Msg: fmt.Sprintf("!GetAtt %q is not Resource.Attribute", n.Value)}
			}
			arg = []any{res, attr}
		}
	case yaml.SequenceNode, yaml.MappingNode:
		plain := *n
		plain.Tag = ""
		v, err := convertPlain(&plain, depth+1)
		if err != nil {
			return nil, err
		}
		arg = v
	default:
		return nil, &TemplateError{Line: n.Line, Column: n.Column, Msg: fmt.Sprintf("%s on an unexpected node", n.Tag)}
	}
	return map[string]any{key: arg}, nil
}

// parameter is one entry of the template's Parameters section, with the constraints CloudFormation
// checks, so Deploy can reject a bad value before it calls AWS.
type parameter struct {
	Name           string
	Type           string
	Default        string
	HasDefault     bool
	AllowedValues  []string
	AllowedPattern *regexp.Regexp
	MinValue       *float64
	MaxValue       *float64
	MinLength      *int
	MaxLength      *int
}

// ParameterError is a parameter value the template does not accept, or a parameter it does not have.
type ParameterError struct {
	Name   string
	Value  string
	Reason string
}

func (e *ParameterError) Error() string {
	return fmt.Sprintf("parameter %s=%q: %s", e.Name, e.Value, e.Reason)
}

func scalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case int:
		return strconv.Itoa(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case bool:
		return strconv.FormatBool(x), true
	default:
		return "", false
	}
}

func numberField(m map[string]any, param, field string) (*float64, error) {
	v, ok := m[field]
	if !ok {
		return nil, nil
	}
	s, _ := scalarString(v)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil, &TemplateError{Msg: fmt.Sprintf("Parameters.%s.%s: %v is not a number", param, field, v)}
	}
	return &f, nil
}

// templateParameters returns the template's parameters sorted by name.
func templateParameters(tmpl map[string]any) ([]parameter, error) {
	raw, ok := tmpl["Parameters"]
	if !ok {
		return nil, nil
	}
	section, ok := raw.(map[string]any)
	if !ok {
		return nil, &TemplateError{Msg: "Parameters is not a mapping"}
	}
	var out []parameter
	for name, def := range section {
		m, ok := def.(map[string]any)
		if !ok {
			return nil, &TemplateError{Msg: fmt.Sprintf("Parameters.%s is not a mapping", name)}
		}
		p := parameter{Name: name}
		p.Type, _ = scalarString(m["Type"])
		if p.Type == "" {
			return nil, &TemplateError{Msg: fmt.Sprintf("Parameters.%s has no Type", name)}
		}
		if d, ok := m["Default"]; ok {
			if p.Default, ok = scalarString(d); !ok {
				return nil, &TemplateError{Msg: fmt.Sprintf("Parameters.%s.Default is not a scalar", name)}
			}
			p.HasDefault = true
		}
		if av, ok := m["AllowedValues"].([]any); ok {
			for _, v := range av {
				s, _ := scalarString(v)
				p.AllowedValues = append(p.AllowedValues, s)
			}
		}
		if pat, ok := m["AllowedPattern"].(string); ok {
			// CloudFormation matches the whole value.
			re, err := regexp.Compile("^(?:" + pat + ")$")
			if err != nil {
				return nil, &TemplateError{Msg: fmt.Sprintf("Parameters.%s.AllowedPattern: %v", name, err)}
			}
			p.AllowedPattern = re
		}
		var err error
		if p.MinValue, err = numberField(m, name, "MinValue"); err != nil {
			return nil, err
		}
		if p.MaxValue, err = numberField(m, name, "MaxValue"); err != nil {
			return nil, err
		}
		for field, dst := range map[string]**int{"MinLength": &p.MinLength, "MaxLength": &p.MaxLength} {
			f, err := numberField(m, name, field)
			if err != nil {
				return nil, err
			}
			if f != nil {
				n := int(*f)
				*dst = &n
			}
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// check reports whether CloudFormation would accept value for p.
func (p parameter) check(value string) error {
	bad := func(reason string) error { return &ParameterError{Name: p.Name, Value: value, Reason: reason} }
	if len(p.AllowedValues) > 0 {
		found := false
		for _, a := range p.AllowedValues {
			found = found || a == value
		}
		if !found {
			return bad("must be one of " + strings.Join(p.AllowedValues, ", "))
		}
	}
	switch p.Type {
	case "Number":
		f, err := strconv.ParseFloat(value, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return bad("not a number")
		}
		if p.MinValue != nil && f < *p.MinValue {
			return bad(fmt.Sprintf("below the minimum %g", *p.MinValue))
		}
		if p.MaxValue != nil && f > *p.MaxValue {
			return bad(fmt.Sprintf("above the maximum %g", *p.MaxValue))
		}
	case "String":
		if p.MinLength != nil && len(value) < *p.MinLength {
			return bad(fmt.Sprintf("shorter than %d characters", *p.MinLength))
		}
		if p.MaxLength != nil && len(value) > *p.MaxLength {
			return bad(fmt.Sprintf("longer than %d characters", *p.MaxLength))
		}
		if p.AllowedPattern != nil && !p.AllowedPattern.MatchString(value) {
			return bad("does not match " + strings.TrimSuffix(strings.TrimPrefix(p.AllowedPattern.String(), "^(?:"), ")$"))
		}
	}
	return nil
}

// resolveParameters returns every template parameter's value: the override when given, else the
// default. An unknown override, a parameter with neither, or a value the template rejects is an error.
func resolveParameters(params []parameter, overrides map[string]string) (map[string]string, error) {
	known := make(map[string]parameter, len(params))
	for _, p := range params {
		known[p.Name] = p
	}
	names := make([]string, 0, len(overrides))
	for name := range overrides {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if _, ok := known[name]; !ok {
			return nil, &ParameterError{Name: name, Value: overrides[name], Reason: "the template has no such parameter"}
		}
	}
	out := make(map[string]string, len(params))
	for _, p := range params {
		v, ok := overrides[p.Name]
		if !ok {
			if !p.HasDefault {
				return nil, &ParameterError{Name: p.Name, Reason: "required: the template gives no default"}
			}
			v = p.Default
		}
		if err := p.check(v); err != nil {
			return nil, err
		}
		out[p.Name] = v
	}
	return out, nil
}
