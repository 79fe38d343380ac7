// Package deploy holds thingpipe's CloudFormation template (every queue, stream, table, topic and
// bucket, least-privilege IAM roles and the device/app IoT policies) and deploys it idempotently:
// Deploy creates the stack when it is missing, updates it when the template or parameters changed,
// and otherwise only reads its outputs. `thingpipe local` calls it against moto; production runs
// the same template with `aws cloudformation deploy` or Deploy (see docs/deploy.md).
package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/smithy-go"
)

// Options configure Deploy. The zero value deploys the embedded template with its defaults as stack
// "thingpipe".
type Options struct {
	// StackName is the CloudFormation stack; default DefaultStackName.
	StackName string
	// Parameters override template parameters by name (e.g. "ArchiveBucketName", "AlertEmails");
	// the others take the template's defaults. An unknown name is an error.
	Parameters map[string]string
	// PollInterval is how often Deploy checks a stack operation in progress; default 5s.
	PollInterval time.Duration
	// Timeout bounds the whole call, waiting included; default 30m.
	Timeout time.Duration
	// Logger receives progress; default slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.StackName == "" {
		o.StackName = DefaultStackName
	}
	if o.PollInterval == 0 {
		o.PollInterval = 5 * time.Second
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// OptionsError names an Options field Deploy cannot use.
type OptionsError struct {
	Field  string
	Reason string
}

func (e *OptionsError) Error() string {
	return fmt.Sprintf("deploy: Options.%s: %s", e.Field, e.Reason)
}

// CloudFormation's rule for stack names.
var stackNamePattern = regexp.MustCompile(`^[a-zA-Z][-a-zA-Z0-9]{0,127}$`)

// Validate checks the options after defaults are applied; parameter values are checked by Deploy
// against the template's own constraints.
func (o Options) Validate() error {
	o = o.withDefaults()
	switch {
	case !stackNamePattern.MatchString(o.StackName):
		return &OptionsError{Field: "StackName", Reason: fmt.Sprintf("%q is not a stack name (a letter, then up to 127 letters, digits, dashes)", o.StackName)}
	case o.PollInterval < 0:
		return &OptionsError{Field: "PollInterval", Reason: "negative"}
	case o.Timeout < 0:
		return &OptionsError{Field: "Timeout", Reason: "negative"}
	}
	return nil
}

// Outputs are the stack's outputs: what workers and `thingpipe rules apply` need to find the resources.
type Outputs struct {
	StackID string

	ProvisioningQueueURL, ProvisioningQueueARN string
	BindingQueueURL, BindingQueueARN           string
	RuleErrorsQueueURL, RuleErrorsQueueARN     string
	ProvisioningDLQURL, ProvisioningDLQARN     string
	BindingDLQURL, BindingDLQARN               string
	AlertingDLQURL, AlertingDLQARN             string
	ArchivalDLQURL, ArchivalDLQARN             string

	TelemetryStreamName, TelemetryStreamARN string

	DevicesTable, BindingsTable, AlertsTable, LeasesTable string

	AlertsTopicARN, EventsTopicARN string

	ArchiveBucket string

	IotRulesRoleARN, WorkersRoleARN string

	DevicePolicyARN, AppPolicyARN string
}

// outputFields ties each template output key to its field; the template test checks both sides agree.
func (o *Outputs) outputFields() map[string]*string {
	return map[string]*string{
		"ProvisioningQueueUrl": &o.ProvisioningQueueURL,
		"ProvisioningQueueArn": &o.ProvisioningQueueARN,
		"BindingQueueUrl":      &o.BindingQueueURL,
		"BindingQueueArn":      &o.BindingQueueARN,
		"RuleErrorsQueueUrl":   &o.RuleErrorsQueueURL,
		"RuleErrorsQueueArn":   &o.RuleErrorsQueueARN,
		"ProvisioningDLQUrl":   &o.ProvisioningDLQURL,
		"ProvisioningDLQArn":   &o.ProvisioningDLQARN,
		"BindingDLQUrl":        &o.BindingDLQURL,
		"BindingDLQArn":        &o.BindingDLQARN,
		"AlertingDLQUrl":       &o.AlertingDLQURL,
		"AlertingDLQArn":       &o.AlertingDLQARN,
		"ArchivalDLQUrl":       &o.ArchivalDLQURL,
		"ArchivalDLQArn":       &o.ArchivalDLQARN,
		"TelemetryStreamName":  &o.TelemetryStreamName,
		"TelemetryStreamArn":   &o.TelemetryStreamARN,
		"DevicesTableName":     &o.DevicesTable,
		"BindingsTableName":    &o.BindingsTable,
		"AlertsTableName":      &o.AlertsTable,
		"LeasesTableName":      &o.LeasesTable,
		"AlertsTopicArn":       &o.AlertsTopicARN,
		"EventsTopicArn":       &o.EventsTopicARN,
		"ArchiveBucketName":    &o.ArchiveBucket,
		"IotRulesRoleArn":      &o.IotRulesRoleARN,
		"WorkersRoleArn":       &o.WorkersRoleARN,
		"DevicePolicyArn":      &o.DevicePolicyARN,
		"AppPolicyArn":         &o.AppPolicyARN,
	}
}

// StackError is a stack Deploy cannot bring to a complete state: a failed create or update, or a
// stack left in a state that needs an operator (e.g. ROLLBACK_COMPLETE must be deleted first).
type StackError struct {
	Stack  string
	Status string
	Reason string
}

func (e *StackError) Error() string {
	msg := fmt.Sprintf("deploy: stack %s is %s", e.Stack, e.Status)
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// cfAPI is the part of the CloudFormation client Deploy uses.
type cfAPI interface {
	DescribeStacks(context.Context, *cloudformation.DescribeStacksInput, ...func(*cloudformation.Options)) (*cloudformation.DescribeStacksOutput, error)
	DescribeStackEvents(context.Context, *cloudformation.DescribeStackEventsInput, ...func(*cloudformation.Options)) (*cloudformation.DescribeStackEventsOutput, error)
	GetTemplate(context.Context, *cloudformation.GetTemplateInput, ...func(*cloudformation.Options)) (*cloudformation.GetTemplateOutput, error)
	CreateStack(context.Context, *cloudformation.CreateStackInput, ...func(*cloudformation.Options)) (*cloudformation.CreateStackOutput, error)
	UpdateStack(context.Context, *cloudformation.UpdateStackInput, ...func(*cloudformation.Options)) (*cloudformation.UpdateStackOutput, error)
}

// Deploy brings stack opts.StackName to the embedded template with the given parameters and returns
// its outputs. It creates the stack if missing, updates it if the template or a parameter value
// differs (CloudFormation's "No updates are to be performed" counts as success), waits for the
// operation while logging its events, and does nothing but read when the stack is already current,
// so calling it again is safe and cheap.
func Deploy(ctx context.Context, cfg aws.Config, opts Options) (Outputs, error) {
	return deployTemplate(ctx, cloudformation.NewFromConfig(cfg), templateBody, opts)
}

func deployTemplate(ctx context.Context, cf cfAPI, body []byte, opts Options) (Outputs, error) {
	if err := opts.Validate(); err != nil {
		return Outputs{}, err
	}
	opts = opts.withDefaults()
	tmpl, err := parseTemplate(body)
	if err != nil {
		return Outputs{}, fmt.Errorf("deploy: %w", err)
	}
	params, err := templateParameters(tmpl)
	if err != nil {
		return Outputs{}, fmt.Errorf("deploy: %w", err)
	}
	want, err := resolveParameters(params, opts.Parameters)
	if err != nil {
		return Outputs{}, fmt.Errorf("deploy: Options.Parameters: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	d := &deployer{cf: cf, opts: opts, log: opts.Logger.With("stack", opts.StackName), body: string(body), params: want}
	return d.run(ctx)
}

// ReadOutputs returns the outputs of an existing stack without changing it (stackName "" means
// DefaultStackName): how tools find the resources of a stack someone else deployed. It needs only
// cloudformation:DescribeStacks.
func ReadOutputs(ctx context.Context, cfg aws.Config, stackName string) (Outputs, error) {
	opts := Options{StackName: stackName}.withDefaults()
	if err := opts.Validate(); err != nil {
		return Outputs{}, err
	}
	d := &deployer{cf: cloudformation.NewFromConfig(cfg), opts: opts, log: opts.Logger}
	stack, err := d.describe(ctx)
	if err != nil {
		return Outputs{}, err
	}
	if stack == nil {
		return Outputs{}, &StackError{Stack: opts.StackName, Status: "MISSING", Reason: "no such stack; deploy it first"}
	}
	return d.outputs(stack)
}

type deployer struct {
	cf     cfAPI
	opts   Options
	log    *slog.Logger
	body   string
	params map[string]string
}

func (d *deployer) run(ctx context.Context) (Outputs, error) {
	stack, err := d.describe(ctx)
	if err != nil {
		return Outputs{}, err
	}
	if stack != nil && inProgress(stack.StackStatus) {
		d.log.Info("waiting for the operation in progress", "status", stack.StackStatus)
		if stack, err = d.wait(ctx, time.Now(), stack.StackStatus); err != nil {
			return Outputs{}, err
		}
	}
	if stack == nil {
		return d.create(ctx)
	}
	switch stack.StackStatus {
	case cftypes.StackStatusCreateComplete, cftypes.StackStatusUpdateComplete,
		cftypes.StackStatusUpdateRollbackComplete, cftypes.StackStatusImportComplete,
		cftypes.StackStatusImportRollbackComplete:
	default:
		return Outputs{}, &StackError{Stack: d.opts.StackName, Status: string(stack.StackStatus),
			Reason: statusHint(stack)}
	}
	current, err := d.isCurrent(ctx, stack)
	if err != nil {
		return Outputs{}, err
	}
	if current {
		d.log.Info("stack is up to date", "status", stack.StackStatus)
		return d.outputs(stack)
	}
	return d.update(ctx)
}

func statusHint(s *cftypes.Stack) string {
	reason := aws.ToString(s.StackStatusReason)
	switch s.StackStatus {
	case cftypes.StackStatusRollbackComplete:
		reason = strings.TrimSpace(reason + " (its creation failed; delete the stack, then deploy again)")
	case cftypes.StackStatusReviewInProgress:
		reason = strings.TrimSpace(reason + " (created by a change set that was never executed; execute or delete it)")
	}
	return reason
}

// describe returns the stack, or nil when it does not exist.
func (d *deployer) describe(ctx context.Context) (*cftypes.Stack, error) {
	out, err := d.cf.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(d.opts.StackName)})
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "ValidationError" && strings.Contains(ae.ErrorMessage(), "does not exist") {
			return nil, nil
		}
		return nil, fmt.Errorf("deploy: describing stack %s: %w", d.opts.StackName, err)
	}
	for i := range out.Stacks {
		if out.Stacks[i].StackStatus != cftypes.StackStatusDeleteComplete {
			return &out.Stacks[i], nil
		}
	}
	return nil, nil
}

// isCurrent reports whether the stack already runs this template with these parameter values.
func (d *deployer) isCurrent(ctx context.Context, stack *cftypes.Stack) (bool, error) {
	have := make(map[string]string, len(stack.Parameters))
	for _, p := range stack.Parameters {
		have[aws.ToString(p.ParameterKey)] = aws.ToString(p.ParameterValue)
	}
	if len(have) != len(d.params) {
		return false, nil
	}
	for k, v := range d.params {
		if hv, ok := have[k]; !ok || hv != v {
			d.log.Debug("parameter changed", "parameter", k, "from", hv, "to", v)
			return false, nil
		}
	}
	out, err := d.cf.GetTemplate(ctx, &cloudformation.GetTemplateInput{
		StackName:     aws.String(d.opts.StackName),
		TemplateStage: cftypes.TemplateStageOriginal,
	})
	if err != nil {
		return false, fmt.Errorf("deploy: reading the template of stack %s: %w", d.opts.StackName, err)
	}
	return aws.ToString(out.TemplateBody) == d.body, nil
}

func (d *deployer) cfnParameters() []cftypes.Parameter {
	names := make([]string, 0, len(d.params))
	for k := range d.params {
		names = append(names, k)
	}
	sort.Strings(names)
	out := make([]cftypes.Parameter, 0, len(names))
	for _, k := range names {
		out = append(out, cftypes.Parameter{ParameterKey: aws.String(k), ParameterValue: aws.String(d.params[k])})
	}
	return out
}

// capabilities acknowledges the template's named IAM roles, which CloudFormation requires.
func capabilities() []cftypes.Capability {
	return []cftypes.Capability{cftypes.CapabilityCapabilityNamedIam}
}

func (d *deployer) create(ctx context.Context) (Outputs, error) {
	d.log.Info("creating stack")
	started := time.Now()
	_, err := d.cf.CreateStack(ctx, &cloudformation.CreateStackInput{
		StackName:    aws.String(d.opts.StackName),
		TemplateBody: aws.String(d.body),
		Parameters:   d.cfnParameters(),
		Capabilities: capabilities(),
		OnFailure:    cftypes.OnFailureRollback,
		Tags:         []cftypes.Tag{{Key: aws.String("application"), Value: aws.String("thingpipe")}},
	})
	if err != nil {
		return Outputs{}, fmt.Errorf("deploy: creating stack %s: %w", d.opts.StackName, err)
	}
	return d.finish(ctx, started, cftypes.StackStatusCreateComplete)
}

func (d *deployer) update(ctx context.Context) (Outputs, error) {
	d.log.Info("updating stack")
	started := time.Now()
	_, err := d.cf.UpdateStack(ctx, &cloudformation.UpdateStackInput{
		StackName:    aws.String(d.opts.StackName),
		TemplateBody: aws.String(d.body),
		Parameters:   d.cfnParameters(),
		Capabilities: capabilities(),
		Tags:         []cftypes.Tag{{Key: aws.String("application"), Value: aws.String("thingpipe")}},
	})
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && strings.Contains(ae.ErrorMessage(), "No updates are to be performed") {
			d.log.Info("stack is up to date (no updates to perform)")
			stack, err := d.describe(ctx)
			if err != nil {
				return Outputs{}, err
			}
			if stack == nil {
				return Outputs{}, &StackError{Stack: d.opts.StackName, Status: "MISSING", Reason: "disappeared during the update"}
			}
			return d.outputs(stack)
		}
		return Outputs{}, fmt.Errorf("deploy: updating stack %s: %w", d.opts.StackName, err)
	}
	return d.finish(ctx, started, cftypes.StackStatusUpdateComplete)
}

func (d *deployer) finish(ctx context.Context, started time.Time, success cftypes.StackStatus) (Outputs, error) {
	stack, err := d.wait(ctx, started, "")
	if err != nil {
		return Outputs{}, err
	}
	if stack == nil {
		return Outputs{}, &StackError{Stack: d.opts.StackName, Status: "DELETE_COMPLETE", Reason: d.failureReason(ctx, started)}
	}
	if stack.StackStatus != success {
		reason := d.failureReason(ctx, started)
		if reason == "" {
			reason = aws.ToString(stack.StackStatusReason)
		}
		return Outputs{}, &StackError{Stack: d.opts.StackName, Status: string(stack.StackStatus), Reason: reason}
	}
	d.log.Info("stack operation complete", "status", stack.StackStatus, "elapsed", time.Since(started).Round(time.Millisecond))
	return d.outputs(stack)
}

// inProgress: an operation is running and will end by itself. REVIEW_IN_PROGRESS is not one: it is a
// stack created by a change set nobody executed, and it stays so.
func inProgress(s cftypes.StackStatus) bool {
	return strings.HasSuffix(string(s), "_IN_PROGRESS") && s != cftypes.StackStatusReviewInProgress
}

// wait polls until the stack leaves every *_IN_PROGRESS state, logging the stack events that happen
// after since. last is the status known so far, for the error when the wait times out.
func (d *deployer) wait(ctx context.Context, since time.Time, last cftypes.StackStatus) (*cftypes.Stack, error) {
	seen := map[string]bool{}
	timedOut := func() error {
		return fmt.Errorf("deploy: waiting for stack %s (%s): %w", d.opts.StackName, last, ctx.Err())
	}
	for {
		stack, err := d.describe(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil, timedOut()
			}
			return nil, err
		}
		d.logEvents(ctx, since, seen)
		if stack == nil || !inProgress(stack.StackStatus) {
			return stack, nil
		}
		last = stack.StackStatus
		select {
		case <-ctx.Done():
			return nil, timedOut()
		case <-time.After(d.opts.PollInterval):
		}
	}
}

// recentEvents returns the stack's events at or after since, oldest first (one page: progress
// logging and failure reasons need only the latest operation's events).
func (d *deployer) recentEvents(ctx context.Context, since time.Time) ([]cftypes.StackEvent, error) {
	out, err := d.cf.DescribeStackEvents(ctx, &cloudformation.DescribeStackEventsInput{StackName: aws.String(d.opts.StackName)})
	if err != nil {
		return nil, err
	}
	// Allow for clock skew between this machine and CloudFormation.
	cutoff := since.Add(-time.Minute)
	var evs []cftypes.StackEvent
	for _, e := range out.StackEvents {
		if e.Timestamp != nil && e.Timestamp.Before(cutoff) {
			continue
		}
		evs = append(evs, e)
	}
	sort.SliceStable(evs, func(i, j int) bool { return aws.ToTime(evs[i].Timestamp).Before(aws.ToTime(evs[j].Timestamp)) })
	return evs, nil
}

func (d *deployer) logEvents(ctx context.Context, since time.Time, seen map[string]bool) {
	evs, err := d.recentEvents(ctx, since)
	if err != nil {
		d.log.Warn("reading stack events", "err", err)
		return
	}
	for _, e := range evs {
		id := aws.ToString(e.EventId)
		if seen[id] {
			continue
		}
		seen[id] = true
		attrs := []any{"resource", aws.ToString(e.LogicalResourceId), "type", aws.ToString(e.ResourceType), "status", e.ResourceStatus}
		if r := aws.ToString(e.ResourceStatusReason); r != "" {
			attrs = append(attrs, "reason", r)
		}
		d.log.Info("stack event", attrs...)
	}
}

// failureReason is the first resource failure of the latest operation, which is the cause; the
// failures after it are usually "Resource creation cancelled".
func (d *deployer) failureReason(ctx context.Context, since time.Time) string {
	evs, err := d.recentEvents(ctx, since)
	if err != nil {
		return ""
	}
	for _, e := range evs {
		if strings.HasSuffix(string(e.ResourceStatus), "_FAILED") {
			return fmt.Sprintf("%s (%s): %s", aws.ToString(e.LogicalResourceId), aws.ToString(e.ResourceType), aws.ToString(e.ResourceStatusReason))
		}
	}
	return ""
}

// OutputsError is a stack whose outputs lack keys Deploy needs (e.g. a stack of another template).
type OutputsError struct {
	Stack   string
	Missing []string
}

func (e *OutputsError) Error() string {
	return fmt.Sprintf("deploy: stack %s has no output %s", e.Stack, strings.Join(e.Missing, ", "))
}

func (d *deployer) outputs(stack *cftypes.Stack) (Outputs, error) {
	return parseOutputs(d.opts.StackName, stack)
}

func parseOutputs(name string, stack *cftypes.Stack) (Outputs, error) {
	got := make(map[string]string, len(stack.Outputs))
	for _, o := range stack.Outputs {
		got[aws.ToString(o.OutputKey)] = aws.ToString(o.OutputValue)
	}
	out := Outputs{StackID: aws.ToString(stack.StackId)}
	var missing []string
	for key, dst := range out.outputFields() {
		v, ok := got[key]
		if !ok || v == "" {
			missing = append(missing, key)
			continue
		}
		*dst = v
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return Outputs{}, &OutputsError{Stack: name, Missing: missing}
	}
	return out, nil
}
