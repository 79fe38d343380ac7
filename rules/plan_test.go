package rules

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/thingpipe/thingpipe/internal/apicalls"
	"github.com/thingpipe/thingpipe/internal/awstest"
)

// planClient returns an IoT client on moto in a region of its own: moto keeps topic rules per region,
// so each test sees an account with no rules but its own.
func planClient(t *testing.T, region string) (*iot.Client, *apicalls.Counter) {
	cfg := awstest.Config(t)
	cfg.Region = region
	calls := apicalls.New()
	calls.Instrument(&cfg)
	return iot.NewFromConfig(cfg), calls
}

func loadDefaultRules(t *testing.T, region string) []*Rule {
	t.Helper()
	rs, err := LoadRules("../deploy/rules", Env{Account: awstest.AccountID, Region: region})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func planSummary(p *Plan) map[ChangeKind][]string {
	out := map[ChangeKind][]string{}
	for _, c := range p.Changes {
		out[c.Kind] = append(out[c.Kind], c.Name)
	}
	return out
}

func TestPlanApplyAgainstMoto(t *testing.T) {
	ctx := context.Background()
	const region = "eu-west-1"
	client, calls := planClient(t, region)
	rs := loadDefaultRules(t, region)

	// 1. An empty account: everything is created.
	plan, err := MakePlan(ctx, client, rs, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := plan.Count(ChangeCreate); got != len(rs) || len(plan.Changes) != len(rs) {
		t.Fatalf("first plan: %v", planSummary(plan))
	}
	if err := plan.Apply(ctx, client, nil); err != nil {
		t.Fatal(err)
	}
	got, err := client.GetTopicRule(ctx, &iot.GetTopicRuleInput{RuleName: aws.String("thingpipe_bind")})
	if err != nil {
		t.Fatal(err)
	}
	if q := aws.ToString(got.Rule.Actions[0].Sqs.QueueUrl); q != "https://sqs.eu-west-1.amazonaws.com/123456789012/thingpipe-binding" {
		t.Errorf("deployed queue URL = %s", q)
	}
	if v := aws.ToString(got.Rule.AwsIotSqlVersion); v != "2016-03-23" {
		t.Errorf("deployed SQL version = %s", v)
	}

	// 2. Applied: nothing to do, though moto echoes the rules back in its own way (errorAction,
	// description, ruleDisabled always present). One list and one get per rule.
	before := calls.Get("IoT", "GetTopicRule")
	plan, err = MakePlan(ctx, client, rs, PlanOptions{Prune: true, PrunePrefix: "thingpipe_"})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Pending() || plan.Count(ChangeUnchanged) != len(rs) {
		for _, c := range plan.Changes {
			t.Errorf("%s %s: %v", c.Kind, c.Name, c.Diff)
		}
		t.Fatalf("second plan is not empty")
	}
	if n := calls.Get("IoT", "GetTopicRule") - before; n != int64(len(rs)) {
		t.Errorf("plan made %d GetTopicRule calls for %d rules", n, len(rs))
	}

	// 3. A stray rule in AWS and an edited rule file.
	_, err = client.CreateTopicRule(ctx, &iot.CreateTopicRuleInput{RuleName: aws.String("stray_rule"),
		TopicRulePayload: &types.TopicRulePayload{Sql: aws.String("SELECT * FROM 'x'"), Actions: []types.Action{}}})
	if err != nil {
		t.Fatal(err)
	}
	edited := *rs[2] // thingpipe_telemetry
	if edited.Name != "thingpipe_telemetry" {
		t.Fatalf("rules are not in the expected order: %s", edited.Name)
	}
	p := edited.Payload
	k := *p.Actions[0].Kinesis
	k.StreamName = aws.String("thingpipe-telemetry-v2")
	p.Actions = []types.Action{{Kinesis: &k}, {Republish: &types.RepublishAction{Topic: aws.String("mirror/${topic(2)}"), RoleArn: k.RoleArn}}}
	p.Description = nil
	p.RuleDisabled = aws.Bool(true)
	edited.Payload = p
	rs2 := []*Rule{rs[0], rs[1], &edited, rs[3]}

	plan, err = MakePlan(ctx, client, rs2, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	plan.Write(&out)
	golden(t, "plan.golden", out.String())

	// Pruning under a prefix leaves rules outside it alone, and says why.
	plan, err = MakePlan(ctx, client, rs2, PlanOptions{Prune: true, PrunePrefix: "thingpipe_"})
	if err != nil {
		t.Fatal(err)
	}
	if sum := planSummary(plan); len(sum[ChangeDelete]) != 0 || len(sum[ChangeUnmanaged]) != 1 || sum[ChangeUnmanaged][0] != "stray_rule" {
		t.Fatalf("plan with prune under thingpipe_: %v", sum)
	}
	out.Reset()
	plan.Write(&out)
	if want := `? unmanaged  stray_rule  (in AWS IoT, no rule file; kept: not under --prune-prefix "thingpipe_")`; !strings.Contains(out.String(), want) {
		t.Errorf("plan lacks %q:\n%s", want, out.String())
	}

	plan, err = MakePlan(ctx, client, rs2, PlanOptions{Prune: true})
	if err != nil {
		t.Fatal(err)
	}
	sum := planSummary(plan)
	if len(sum[ChangeDelete]) != 1 || sum[ChangeDelete][0] != "stray_rule" || len(sum[ChangeReplace]) != 1 {
		t.Fatalf("plan with prune: %v", sum)
	}
	var done []string
	if err := plan.Apply(ctx, client, func(c Change) { done = append(done, string(c.Kind)+" "+c.Name) }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(done, ", ") != "replace thingpipe_telemetry, delete stray_rule" {
		t.Errorf("applied: %v", done)
	}

	// 4. Converged.
	plan, err = MakePlan(ctx, client, rs2, PlanOptions{Prune: true})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Pending() {
		t.Errorf("after apply: %v", planSummary(plan))
	}
	got, err = client.GetTopicRule(ctx, &iot.GetTopicRuleInput{RuleName: aws.String("thingpipe_telemetry")})
	if err != nil {
		t.Fatal(err)
	}
	if !aws.ToBool(got.Rule.RuleDisabled) || len(got.Rule.Actions) != 2 {
		t.Errorf("replaced rule: disabled=%v actions=%d", aws.ToBool(got.Rule.RuleDisabled), len(got.Rule.Actions))
	}
}

func TestDiffPayloadsIsSemantic(t *testing.T) {
	base := types.TopicRulePayload{
		Sql:     aws.String("SELECT * FROM 'a'"),
		Actions: []types.Action{{Sns: &types.SnsAction{TargetArn: aws.String("arn"), RoleArn: aws.String("r")}}},
	}
	echoed := types.TopicRulePayload{
		Sql:              aws.String("SELECT * FROM 'a'\n"),
		AwsIotSqlVersion: aws.String("2015-10-08"),
		Description:      aws.String(""),
		RuleDisabled:     aws.Bool(false),
		ErrorAction:      &types.Action{},
		Actions:          []types.Action{{Sns: &types.SnsAction{TargetArn: aws.String("arn"), RoleArn: aws.String("r"), MessageFormat: types.MessageFormatRaw}}},
	}
	if d := DiffPayloads(echoed, base); len(d) != 0 {
		t.Errorf("defaults reported as differences: %v", d)
	}
	changed := base
	changed.Actions = []types.Action{{Sns: &types.SnsAction{TargetArn: aws.String("arn"), RoleArn: aws.String("r"), MessageFormat: types.MessageFormatJson}}}
	d := DiffPayloads(base, changed)
	if len(d) != 1 || d[0].String() != `~ actions[0].sns.messageFormat: "RAW" → "JSON"` {
		t.Errorf("diff = %v", d)
	}
}
