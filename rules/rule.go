package rules

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/thingpipe/thingpipe/rules/iotsql"
)

// Rule is a rule file resolved for one environment and compiled: ready to evaluate locally and to
// deploy. It is immutable and safe for concurrent use.
type Rule struct {
	Name string
	// Path is the rule file it came from.
	Path string
	// Payload is the exact CreateTopicRule payload: placeholders resolved and awsIotSqlVersion made
	// explicit (AWS's default, 2015-10-08, when the file names none).
	Payload types.TopicRulePayload
	Version iotsql.Version
	Query   *iotsql.Query
	// templates holds the compiled substitution template of every templated action field, by its text.
	templates map[string]*iotsql.Template
	// templatedActions[i] says whether action i has templates; templatedErrorAction the same for the
	// errorAction. Actions without templates are used as they are, without a copy.
	templatedActions     []bool
	templatedErrorAction bool
}

// Disabled reports whether the rule is disabled (ruleDisabled: true): it deploys but never fires.
func (r *Rule) Disabled() bool { return aws.ToBool(r.Payload.RuleDisabled) }

// JSON returns the resolved rule in AWS's shape: name, then the topicRulePayload fields.
func (r *Rule) JSON() Object { return ruleJSON(r.Name, r.Payload) }

// isTemplated reports whether an action field holds a substitution template. Role ARNs never do:
// AWS assumes the role before it evaluates anything.
func isTemplated(path, s string) bool {
	return strings.Contains(s, "${") && !strings.HasSuffix(path, ".roleArn")
}

// Resolve resolves the file's placeholders for env, and compiles its SQL and every substitution
// template. Errors name the file and field, and carry line:column for SQL and templates.
func (f *File) Resolve(env Env) (*Rule, error) {
	r, errs := f.resolve(env)
	if len(errs) > 0 {
		for i, err := range errs {
			errs[i] = &FileError{Path: f.Path, Err: fmt.Errorf("rule %s: %w", f.Name, err)}
		}
		return nil, errors.Join(errs...)
	}
	return r, nil
}

// resolve returns every problem it finds, so lint can report them all.
func (f *File) resolve(env Env) (*Rule, []error) {
	env = env.WithDefaults()
	if err := env.Validate(); err != nil {
		return nil, []error{err}
	}
	var errs []error
	r := &Rule{Name: f.Name, Path: f.Path, templates: map[string]*iotsql.Template{}}
	v, err := iotsql.ParseVersion(aws.ToString(f.Payload.AwsIotSqlVersion))
	if err != nil {
		errs = append(errs, &FieldError{"awsIotSqlVersion", err.Error()})
		v = iotsql.DefaultVersion
	}
	r.Version = v
	p := f.Payload
	p.AwsIotSqlVersion = aws.String(string(v))
	p.Actions = make([]types.Action, len(f.Payload.Actions))
	var templated bool
	resolveAction := func(path string, a types.Action) types.Action {
		templated = false
		// Problems are collected, not returned, so that every bad field is reported at once.
		out, _ := mapActionStrings(path, a, func(fp, s string) (string, error) {
			expanded, err := env.Expand(s)
			if err != nil {
				errs = append(errs, &FieldError{fp, err.Error()})
				return s, nil
			}
			if isTemplated(fp, expanded) {
				templated = true
				if _, done := r.templates[expanded]; !done {
					t, err := iotsql.CompileTemplate(expanded, v)
					if err != nil {
						errs = append(errs, &FieldError{fp, fmt.Sprintf("substitution template %q: %s", expanded, positioned(err))})
						return expanded, nil
					}
					r.templates[expanded] = t
				}
			}
			return expanded, nil
		})
		return out
	}
	r.templatedActions = make([]bool, len(f.Payload.Actions))
	for i, a := range f.Payload.Actions {
		p.Actions[i] = resolveAction(fmt.Sprintf("actions[%d]", i), a)
		r.templatedActions[i] = templated
	}
	if f.Payload.ErrorAction != nil {
		ea := resolveAction("errorAction", *f.Payload.ErrorAction)
		p.ErrorAction = &ea
		r.templatedErrorAction = templated
	}
	r.Payload = p
	q, err := iotsql.Compile(aws.ToString(p.Sql), v)
	if err != nil {
		errs = append(errs, &FieldError{"sql", positioned(err)})
	}
	r.Query = q
	return r, errs
}

// positioned formats an iotsql error as "line:column: message" when it has a position.
func positioned(err error) string {
	var e *iotsql.Error
	if errors.As(err, &e) && e.Line > 0 {
		return fmt.Sprintf("%d:%d: %s", e.Line, e.Column, e.Msg)
	}
	return err.Error()
}

// LoadRules loads every rule file in dir and resolves it for env.
func LoadRules(dir string, env Env) ([]*Rule, error) {
	files, err := LoadDir(dir)
	if err != nil {
		return nil, err
	}
	return ResolveAll(files, env)
}

// ResolveAll resolves every file, reporting all failures joined.
func ResolveAll(files []*File, env Env) ([]*Rule, error) {
	var out []*Rule
	var errs []error
	for _, f := range files {
		r, err := f.Resolve(env)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}

// Invocation is what a matched rule does with one message: its SELECT output and its actions with
// every substitution template rendered.
type Invocation struct {
	Rule   *Rule
	Output json.RawMessage
	// Actions are the rule's actions, rendered for this message.
	Actions []types.Action
	// ErrorAction is the rule's error action rendered for this message, or nil. Actions and ErrorAction
	// may share memory with the Rule: read them, do not modify them.
	ErrorAction *types.Action
}

// Eval evaluates the rule on m. It returns nil when the rule is disabled or does not match; an error
// when the message could not be evaluated (e.g. its payload is not JSON) or a template failed.
func (r *Rule) Eval(m *iotsql.Message) (*Invocation, error) {
	if r.Disabled() {
		return nil, nil
	}
	res, err := r.Query.Eval(m)
	if err != nil {
		return nil, fmt.Errorf("rule %s: %w", r.Name, err)
	}
	if !res.Matched {
		return nil, nil
	}
	inv := &Invocation{Rule: r, Output: res.Output, Actions: make([]types.Action, len(r.Payload.Actions))}
	for i, a := range r.Payload.Actions {
		if !r.templatedActions[i] {
			inv.Actions[i] = a
			continue
		}
		if inv.Actions[i], err = r.RenderAction(a, m); err != nil {
			return nil, fmt.Errorf("rule %s: actions[%d]: %w", r.Name, i, err)
		}
	}
	if ea := r.Payload.ErrorAction; ea != nil {
		inv.ErrorAction = ea
		if r.templatedErrorAction {
			rendered, err := r.RenderAction(*ea, m)
			if err != nil {
				return nil, fmt.Errorf("rule %s: errorAction: %w", r.Name, err)
			}
			inv.ErrorAction = &rendered
		}
	}
	return inv, nil
}

// RenderAction returns a (one of r's actions) with every substitution template rendered on m: a copy
// when it has templates, a itself (shared, not to be modified) when it has none.
func (r *Rule) RenderAction(a types.Action, m *iotsql.Message) (types.Action, error) {
	if len(r.templates) == 0 {
		return a, nil
	}
	return mapActionStrings("", a, func(path, s string) (string, error) {
		t, ok := r.templates[s]
		if !ok || !isTemplated(path, s) {
			return s, nil
		}
		out, err := t.Render(m)
		if err != nil {
			return "", fmt.Errorf("rendering %q: %w", s, err)
		}
		return out, nil
	})
}

// Evaluate evaluates every rule on m, in order, and returns the invocations of the rules that matched.
// A rule that fails to evaluate does not stop the others; its error is returned joined with the rest.
func Evaluate(rules []*Rule, m *iotsql.Message) ([]*Invocation, error) {
	var out []*Invocation
	var errs []error
	for _, r := range rules {
		inv, err := r.Eval(m)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if inv != nil {
			out = append(out, inv)
		}
	}
	return out, errors.Join(errs...)
}

// ActionPayload is the bytes an action sends for a SELECT output: the output itself, or for an SQS
// action with useBase64 its base64 encoding, as AWS does.
func ActionPayload(a types.Action, output []byte) []byte {
	if a.Sqs != nil && aws.ToBool(a.Sqs.UseBase64) {
		return []byte(base64.StdEncoding.EncodeToString(output))
	}
	return output
}

// ActionTarget names the resource an action writes to: queue URL, stream, topic ARN, table, topic, …
// or "" for action types without a single obvious target.
func ActionTarget(a types.Action) string {
	switch {
	case a.Sqs != nil:
		return aws.ToString(a.Sqs.QueueUrl)
	case a.Kinesis != nil:
		return aws.ToString(a.Kinesis.StreamName)
	case a.Sns != nil:
		return aws.ToString(a.Sns.TargetArn)
	case a.DynamoDBv2 != nil && a.DynamoDBv2.PutItem != nil:
		return aws.ToString(a.DynamoDBv2.PutItem.TableName)
	case a.DynamoDB != nil:
		return aws.ToString(a.DynamoDB.TableName)
	case a.Republish != nil:
		return aws.ToString(a.Republish.Topic)
	case a.Lambda != nil:
		return aws.ToString(a.Lambda.FunctionArn)
	case a.S3 != nil:
		return aws.ToString(a.S3.BucketName) + "/" + aws.ToString(a.S3.Key)
	case a.Firehose != nil:
		return aws.ToString(a.Firehose.DeliveryStreamName)
	case a.Http != nil:
		return aws.ToString(a.Http.Url)
	}
	return ""
}
