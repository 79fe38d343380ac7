package rules

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"
)

// Severity says whether a lint problem fails the lint.
type Severity string

const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// Problem is one lint finding.
type Problem struct {
	File     string
	Rule     string // "" when the file could not be read far enough to know it
	Severity Severity
	Msg      string
}

// String formats the problem as "file: rule: problem", warnings as "file: rule: warning: problem".
func (p Problem) String() string {
	rule := p.Rule
	if rule == "" {
		rule = "-"
	}
	if p.Severity == SeverityWarning {
		return fmt.Sprintf("%s: %s: warning: %s", p.File, rule, p.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", p.File, rule, p.Msg)
}

// MaxActions is AWS IoT's limit on actions per rule.
const MaxActions = 10

// RuleNameRE is AWS IoT's rule name pattern.
var RuleNameRE = regexp.MustCompile(`^[a-zA-Z0-9_]+$`)

// requiredFields lists, per action type, the fields AWS IoT requires (dotted for nested fields), as the
// AWS SDK's request validation does.
var requiredFields = map[string][]string{
	"cloudwatchAlarm":  {"roleArn", "alarmName", "stateReason", "stateValue"},
	"cloudwatchLogs":   {"roleArn", "logGroupName"},
	"cloudwatchMetric": {"roleArn", "metricNamespace", "metricName", "metricValue", "metricUnit"},
	"dynamoDB":         {"tableName", "roleArn", "hashKeyField", "hashKeyValue"},
	"dynamoDBv2":       {"roleArn", "putItem.tableName"},
	"elasticsearch":    {"roleArn", "endpoint", "index", "type", "id"},
	"firehose":         {"roleArn", "deliveryStreamName"},
	"http":             {"url"},
	"iotAnalytics":     {},
	"iotEvents":        {"inputName", "roleArn"},
	"iotSiteWise":      {"putAssetPropertyValueEntries", "roleArn"},
	"kafka":            {"destinationArn", "topic", "clientProperties"},
	"kinesis":          {"roleArn", "streamName"},
	"lambda":           {"functionArn"},
	"location":         {"roleArn", "trackerName", "deviceId", "latitude", "longitude"},
	"openSearch":       {"roleArn", "endpoint", "index", "type", "id"},
	"republish":        {"roleArn", "topic"},
	"s3":               {"roleArn", "bucketName", "key"},
	"salesforce":       {"token", "url"},
	"sns":              {"targetArn", "roleArn"},
	"sqs":              {"roleArn", "queueUrl"},
	"stepFunctions":    {"stateMachineName", "roleArn"},
	"timestream":       {"roleArn", "databaseName", "tableName", "dimensions"},
}

// LocalActionTypes are the action types the local rules bridge carries out; the others deploy to AWS
// but are skipped in local runs.
var LocalActionTypes = []string{"sqs", "kinesis", "sns", "dynamoDBv2", "republish"}

// Lint checks every rule file in dir and returns its findings, errors and warnings, in file order. The
// error return is for a directory that cannot be read.
func Lint(dir string) ([]Problem, error) {
	paths, err := ruleFilePaths(dir)
	if err != nil {
		return nil, err
	}
	var out []Problem
	seen := map[string]string{}
	for _, p := range paths {
		f, err := ReadFile(p)
		if err != nil {
			var fe *FileError
			if errors.As(err, &fe) {
				err = fe.Err
			}
			out = append(out, Problem{File: p, Severity: SeverityError, Msg: err.Error()})
			continue
		}
		if prev, dup := seen[f.Name]; dup {
			out = append(out, Problem{File: p, Rule: f.Name, Severity: SeverityError, Msg: "rule name is also used in " + prev})
		}
		seen[f.Name] = p
		out = append(out, LintFile(f)...)
	}
	return out, nil
}

// LintFile checks one parsed rule file.
func LintFile(f *File) []Problem {
	var out []Problem
	add := func(sev Severity, format string, args ...any) {
		out = append(out, Problem{File: f.Path, Rule: f.Name, Severity: sev, Msg: fmt.Sprintf(format, args...)})
	}
	switch {
	case !RuleNameRE.MatchString(f.Name):
		add(SeverityError, "name %q must match %s (letters, digits and underscores)", f.Name, RuleNameRE)
	case len(f.Name) > 128:
		add(SeverityError, "name is %d characters long, AWS allows 128", len(f.Name))
	}
	switch n := len(f.Payload.Actions); {
	case n == 0:
		add(SeverityWarning, "no actions: the rule matches messages but does nothing with them")
	case n > MaxActions:
		add(SeverityError, "%d actions, AWS IoT allows at most %d per rule", n, MaxActions)
	}
	notLocal := map[string][]string{}
	for i, a := range f.Payload.Actions {
		for _, msg := range lintAction(a, false) {
			add(SeverityError, "actions[%d]%s", i, msg)
		}
		if t := ActionType(a); t != "" && !contains(LocalActionTypes, t) {
			notLocal[t] = append(notLocal[t], fmt.Sprint(i))
		}
	}
	for _, t := range sortedKeys(notLocal) {
		add(SeverityWarning, "actions[%s]: %s actions are not carried out by the local rules bridge (it runs %s)",
			strings.Join(notLocal[t], ","), t, strings.Join(LocalActionTypes, ", "))
	}
	if f.Payload.ErrorAction == nil {
		add(SeverityWarning, "no errorAction: messages whose actions fail are lost")
	} else {
		for _, msg := range lintAction(*f.Payload.ErrorAction, true) {
			add(SeverityError, "errorAction%s", msg)
		}
	}
	r, errs := f.resolve(LocalEnv)
	for _, err := range errs {
		add(SeverityError, "%v", err)
	}
	if r != nil {
		// Queue URLs are checked once resolved: the local bridge finds queues by the URL's name.
		check := func(where string, a types.Action) {
			if a.Sqs != nil && a.Sqs.QueueUrl != nil && !strings.ContainsAny(*a.Sqs.QueueUrl, "${}") {
				if _, _, err := QueueURLParts(*a.Sqs.QueueUrl); err != nil {
					add(SeverityError, "%s.sqs.queueUrl: %v", where, err)
				}
			}
		}
		for i, a := range r.Payload.Actions {
			check(fmt.Sprintf("actions[%d]", i), a)
		}
		if r.Payload.ErrorAction != nil {
			check("errorAction", *r.Payload.ErrorAction)
		}
	}
	if r != nil && r.Query != nil {
		for _, fn := range r.Query.Unsupported() {
			add(SeverityWarning, "sql: %s() needs AWS and evaluates to Undefined in local runs and tests", fn)
		}
	}
	return out
}

// lintAction returns problems with one action, each starting with the field path after the action's
// own path (e.g. ".sqs: missing required field queueUrl").
func lintAction(a types.Action, isErrorAction bool) []string {
	kinds := actionTypes(a)
	switch len(kinds) {
	case 0:
		return []string{": no action type (one of " + strings.Join(sortedKeys(requiredFields), ", ") + ")"}
	case 1:
	default:
		return []string{fmt.Sprintf(": more than one action type (%s); write one action per list entry", strings.Join(kinds, ", "))}
	}
	kind := kinds[0]
	var out []string
	body, _ := toGeneric(ActionJSON(a)).(map[string]any)
	fields, _ := body[kind].(map[string]any)
	for _, req := range requiredFields[kind] {
		if !hasPath(fields, req) {
			out = append(out, fmt.Sprintf(".%s: missing required field %s", kind, req))
		}
	}
	if ra, ok := fields["roleArn"].(string); ok && strings.Contains(ra, "${") {
		out = append(out, fmt.Sprintf(".%s.roleArn: cannot hold a substitution template", kind))
	}
	switch {
	case a.Republish != nil && a.Republish.Qos != nil:
		if q := aws.ToInt32(a.Republish.Qos); q != 0 && q != 1 {
			out = append(out, fmt.Sprintf(".republish.qos: %d, must be 0 or 1", q))
		}
	}
	if isErrorAction && a.Republish != nil && strings.HasPrefix(aws.ToString(a.Republish.Topic), "$") {
		out = append(out, ".republish.topic: an error action cannot republish to a reserved ($) topic")
	}
	return out
}

func hasPath(obj map[string]any, path string) bool {
	head, rest, nested := strings.Cut(path, ".")
	v, ok := obj[head]
	if !ok || v == nil {
		return false
	}
	if !nested {
		return true
	}
	m, ok := v.(map[string]any)
	return ok && hasPath(m, rest)
}

// QueueURLParts splits an SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>) into
// its account and queue name; the local bridge finds the queue by name on whatever endpoint it uses.
func QueueURLParts(queueURL string) (account, name string, err error) {
	u, err := url.Parse(queueURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return "", "", fmt.Errorf("%q is not a queue URL like https://sqs.{{region}}.{{urlSuffix}}/{{account}}/<queue>", queueURL)
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return "", "", fmt.Errorf("%q: the path must be /<account>/<queue>", queueURL)
	}
	return parts[0], parts[1], nil
}
