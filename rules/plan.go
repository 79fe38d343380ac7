package rules

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/thingpipe/thingpipe/rules/iotsql"
)

// IoTAPI is the part of the AWS IoT API that plan and apply use; *iot.Client implements it.
type IoTAPI interface {
	ListTopicRules(ctx context.Context, in *iot.ListTopicRulesInput, optFns ...func(*iot.Options)) (*iot.ListTopicRulesOutput, error)
	GetTopicRule(ctx context.Context, in *iot.GetTopicRuleInput, optFns ...func(*iot.Options)) (*iot.GetTopicRuleOutput, error)
	CreateTopicRule(ctx context.Context, in *iot.CreateTopicRuleInput, optFns ...func(*iot.Options)) (*iot.CreateTopicRuleOutput, error)
	ReplaceTopicRule(ctx context.Context, in *iot.ReplaceTopicRuleInput, optFns ...func(*iot.Options)) (*iot.ReplaceTopicRuleOutput, error)
	DeleteTopicRule(ctx context.Context, in *iot.DeleteTopicRuleInput, optFns ...func(*iot.Options)) (*iot.DeleteTopicRuleOutput, error)
}

// ChangeKind is what apply does to one rule.
type ChangeKind string

const (
	ChangeCreate    ChangeKind = "create"
	ChangeReplace   ChangeKind = "replace"
	ChangeDelete    ChangeKind = "delete"
	ChangeUnchanged ChangeKind = "unchanged"
	// ChangeUnmanaged is a rule in AWS IoT with no rule file, left alone: pruning is off, or its name is
	// outside the prune prefix.
	ChangeUnmanaged ChangeKind = "unmanaged"
)

// Change is one rule's line in a plan.
type Change struct {
	Kind ChangeKind
	Name string
	// Path is the rule file; empty for rules that exist only in AWS IoT.
	Path string
	// Desired is the payload apply sends (create and replace).
	Desired *types.TopicRulePayload
	// Diff lists the fields that differ, for replace: what AWS IoT has now, then what the file says.
	Diff []FieldChange
	// Kept says why an unmanaged rule is left alone.
	Kept string
}

// PlanOptions says what MakePlan does with topic rules that have no rule file.
type PlanOptions struct {
	// Prune deletes them, but only those whose names start with PrunePrefix ("" = every one).
	// A prefix keeps a rule set from deleting rules that other teams or tools own in the account.
	Prune       bool
	PrunePrefix string
}

// FieldChange is one differing field: Old is what AWS IoT has, New what the rule file says; a nil
// side means the field is absent there.
type FieldChange struct {
	Path     string
	Old, New any
}

func (f FieldChange) String() string {
	switch {
	case f.Old == nil:
		return fmt.Sprintf("+ %s: %s", f.Path, show(f.New))
	case f.New == nil:
		return fmt.Sprintf("- %s: %s", f.Path, show(f.Old))
	}
	return fmt.Sprintf("~ %s: %s → %s", f.Path, show(f.Old), show(f.New))
}

// Plan is the set of changes that makes AWS IoT hold exactly the rule files' rules.
type Plan struct {
	Changes []Change
}

// Count returns how many changes are of kind k.
func (p *Plan) Count(k ChangeKind) int {
	n := 0
	for _, c := range p.Changes {
		if c.Kind == k {
			n++
		}
	}
	return n
}

// Pending reports whether applying the plan would change anything.
func (p *Plan) Pending() bool {
	return p.Count(ChangeCreate)+p.Count(ChangeReplace)+p.Count(ChangeDelete) > 0
}

// MakePlan compares the resolved rules with the topic rules in AWS IoT. Rules in AWS IoT without a rule
// file are deleted only with opts.Prune and a name under opts.PrunePrefix; otherwise they are listed
// as unmanaged. Rules are compared
// semantically: a field absent on one side equals its default on the other (false, "", 0, RAW,
// SQL version 2015-10-08), so a plan after an apply is empty whatever the service echoes back.
func MakePlan(ctx context.Context, api IoTAPI, rules []*Rule, opts PlanOptions) (*Plan, error) {
	existing := map[string]bool{}
	pager := iot.NewListTopicRulesPaginator(api, &iot.ListTopicRulesInput{})
	for pager.HasMorePages() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing topic rules: %w", err)
		}
		for _, r := range page.Rules {
			existing[aws.ToString(r.RuleName)] = true
		}
	}
	p := &Plan{}
	inFiles := map[string]bool{}
	for _, r := range rules {
		inFiles[r.Name] = true
		desired := r.Payload
		c := Change{Name: r.Name, Path: r.Path, Desired: &desired}
		if !existing[r.Name] {
			c.Kind = ChangeCreate
			p.Changes = append(p.Changes, c)
			continue
		}
		out, err := api.GetTopicRule(ctx, &iot.GetTopicRuleInput{RuleName: aws.String(r.Name)})
		if err != nil {
			return nil, fmt.Errorf("getting topic rule %s: %w", r.Name, err)
		}
		c.Diff = DiffPayloads(currentPayload(out.Rule), desired)
		c.Kind = ChangeUnchanged
		if len(c.Diff) > 0 {
			c.Kind = ChangeReplace
		}
		p.Changes = append(p.Changes, c)
	}
	for _, name := range sortedKeys(existing) {
		if inFiles[name] {
			continue
		}
		c := Change{Kind: ChangeDelete, Name: name}
		switch {
		case !opts.Prune:
			c.Kind, c.Kept = ChangeUnmanaged, "--prune deletes it"
		case !strings.HasPrefix(name, opts.PrunePrefix):
			c.Kind, c.Kept = ChangeUnmanaged, fmt.Sprintf("not under --prune-prefix %q", opts.PrunePrefix)
		}
		p.Changes = append(p.Changes, c)
	}
	return p, nil
}

func currentPayload(r *types.TopicRule) types.TopicRulePayload {
	if r == nil {
		return types.TopicRulePayload{}
	}
	return types.TopicRulePayload{
		Sql: r.Sql, Description: r.Description, Actions: r.Actions, ErrorAction: r.ErrorAction,
		RuleDisabled: r.RuleDisabled, AwsIotSqlVersion: r.AwsIotSqlVersion,
	}
}

// DiffPayloads lists the fields in which two payloads differ semantically.
func DiffPayloads(current, desired types.TopicRulePayload) []FieldChange {
	return fieldDiff("", canonicalPayload(current), canonicalPayload(desired))
}

// canonicalPayload is the payload as a generic JSON tree with defaults made explicit and unset values
// (false, "", 0, empty objects and arrays) removed.
func canonicalPayload(p types.TopicRulePayload) any {
	if aws.ToString(p.AwsIotSqlVersion) == "" {
		p.AwsIotSqlVersion = aws.String(string(iotsql.DefaultVersion))
	}
	p.Sql = aws.String(strings.TrimSpace(aws.ToString(p.Sql)))
	fix := func(a types.Action) types.Action {
		if a.Sns != nil && a.Sns.MessageFormat == "" {
			sns := *a.Sns
			sns.MessageFormat = types.MessageFormatRaw
			a.Sns = &sns
		}
		return a
	}
	actions := make([]types.Action, len(p.Actions))
	for i, a := range p.Actions {
		actions[i] = fix(a)
	}
	p.Actions = actions
	if p.ErrorAction != nil {
		ea := fix(*p.ErrorAction)
		p.ErrorAction = &ea
	}
	v, _ := encodeValue(reflect.ValueOf(p))
	return prune(toGeneric(v))
}

// prune removes values equal to their type's zero, recursively; nil means nothing is left.
func prune(x any) any {
	switch v := x.(type) {
	case map[string]any:
		for k, e := range v {
			if pe := prune(e); pe == nil {
				delete(v, k)
			} else {
				v[k] = pe
			}
		}
		if len(v) == 0 {
			return nil
		}
		return v
	case []any:
		if len(v) == 0 {
			return nil
		}
		for i, e := range v {
			pe := prune(e)
			if pe == nil {
				pe = map[string]any{} // keep positions: an empty action is still an action
			}
			v[i] = pe
		}
		return v
	case string:
		if v == "" {
			return nil
		}
	case bool:
		if !v {
			return nil
		}
	case interface{ String() string }: // json.Number
		if s := v.String(); s == "0" || s == "0.0" {
			return nil
		}
	}
	return x
}

// fieldDiff lists differences between two generic JSON trees, old (AWS) against new (file).
func fieldDiff(path string, old, new any) []FieldChange {
	om, oIsMap := old.(map[string]any)
	nm, nIsMap := new.(map[string]any)
	if oIsMap && nIsMap {
		keys := map[string]bool{}
		for k := range om {
			keys[k] = true
		}
		for k := range nm {
			keys[k] = true
		}
		var out []FieldChange
		for _, k := range sortedKeys(keys) {
			out = append(out, fieldDiff(joinPath(path, k), om[k], nm[k])...)
		}
		return out
	}
	oa, oIsArr := old.([]any)
	na, nIsArr := new.([]any)
	if oIsArr && nIsArr {
		var out []FieldChange
		for i := 0; i < len(oa) || i < len(na); i++ {
			var o, n any
			if i < len(oa) {
				o = oa[i]
			}
			if i < len(na) {
				n = na[i]
			}
			out = append(out, fieldDiff(fmt.Sprintf("%s[%d]", path, i), o, n)...)
		}
		return out
	}
	if len(jsonDiff(path, new, old, false)) == 0 {
		return nil
	}
	return []FieldChange{{Path: path, Old: old, New: new}}
}

// Write prints the plan for a person.
func (p *Plan) Write(w io.Writer) {
	for _, c := range p.Changes {
		where := ""
		if c.Path != "" {
			where = "  (" + c.Path + ")"
		}
		switch c.Kind {
		case ChangeCreate:
			fmt.Fprintf(w, "  + create     %s%s\n", c.Name, where)
		case ChangeReplace:
			fmt.Fprintf(w, "  ~ replace    %s%s\n", c.Name, where)
			for _, d := range c.Diff {
				fmt.Fprintf(w, "        %s\n", d)
			}
		case ChangeDelete:
			fmt.Fprintf(w, "  - delete     %s  (in AWS IoT, no rule file)\n", c.Name)
		case ChangeUnchanged:
			fmt.Fprintf(w, "  = unchanged  %s%s\n", c.Name, where)
		case ChangeUnmanaged:
			fmt.Fprintf(w, "  ? unmanaged  %s  (in AWS IoT, no rule file; kept: %s)\n", c.Name, c.Kept)
		}
	}
	fmt.Fprintf(w, "%d to create, %d to replace, %d to delete, %d unchanged",
		p.Count(ChangeCreate), p.Count(ChangeReplace), p.Count(ChangeDelete), p.Count(ChangeUnchanged))
	if n := p.Count(ChangeUnmanaged); n > 0 {
		fmt.Fprintf(w, ", %d unmanaged", n)
	}
	fmt.Fprintln(w, ".")
}

// Apply carries out the plan's creates, replaces and deletes, in that order, calling done after each
// one that succeeded. It goes on after a failure and returns every failure joined.
func (p *Plan) Apply(ctx context.Context, api IoTAPI, done func(Change)) error {
	var errs []error
	order := []ChangeKind{ChangeCreate, ChangeReplace, ChangeDelete}
	changes := append([]Change(nil), p.Changes...)
	sort.SliceStable(changes, func(i, j int) bool { return kindIndex(order, changes[i].Kind) < kindIndex(order, changes[j].Kind) })
	for _, c := range changes {
		var err error
		switch c.Kind {
		case ChangeCreate:
			_, err = api.CreateTopicRule(ctx, &iot.CreateTopicRuleInput{RuleName: aws.String(c.Name), TopicRulePayload: c.Desired})
		case ChangeReplace:
			_, err = api.ReplaceTopicRule(ctx, &iot.ReplaceTopicRuleInput{RuleName: aws.String(c.Name), TopicRulePayload: c.Desired})
		case ChangeDelete:
			_, err = api.DeleteTopicRule(ctx, &iot.DeleteTopicRuleInput{RuleName: aws.String(c.Name)})
		default:
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", c.Kind, c.Name, err))
			continue
		}
		if done != nil {
			done(c)
		}
	}
	return errors.Join(errs...)
}

func kindIndex(order []ChangeKind, k ChangeKind) int {
	for i, o := range order {
		if o == k {
			return i
		}
	}
	return len(order)
}
