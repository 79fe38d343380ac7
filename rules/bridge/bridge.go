// Package bridge carries out topic rules locally, as AWS IoT's rules engine does: for each MQTT
// message it evaluates every enabled rule and runs the matched rules' actions through the AWS SDK
// (SQS, Kinesis, SNS, DynamoDB, and republish to the local broker), and when an action fails it runs
// the rule's errorAction with a message shaped like AWS's. With AWS_ENDPOINT_URL pointing at moto the
// same rule files that deploy to AWS IoT drive the local stack.
package bridge

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/uuid"

	"github.com/thingpipe/thingpipe/rules"
	"github.com/thingpipe/thingpipe/rules/iotsql"
)

// Republisher publishes a message to the local MQTT broker; the embedded broker implements it.
type Republisher interface {
	Republish(ctx context.Context, topic string, payload []byte, qos byte) error
}

// Config configures a Bridge.
type Config struct {
	// AWS is the SDK configuration the actions use (AWS_ENDPOINT_URL points it at moto locally).
	AWS aws.Config
	// Rules are the resolved rules to run, e.g. from rules.LoadRules(dir, env).
	Rules []*rules.Rule
	// Republisher carries out republish actions; nil makes them fail (and trigger the errorAction).
	Republisher Republisher
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate names the first bad field.
func (c Config) Validate() error {
	if c.AWS.Region == "" {
		return errors.New("bridge: AWS.Region is empty")
	}
	for i, r := range c.Rules {
		if r == nil || r.Query == nil {
			return fmt.Errorf("bridge: Rules[%d] is not a resolved rule", i)
		}
	}
	return nil
}

// Bridge runs rules on messages. It is safe for concurrent use.
type Bridge struct {
	cfg     Config
	sqs     *sqs.Client
	kinesis *kinesis.Client
	sns     *sns.Client
	ddb     *dynamodb.Client

	mu        sync.Mutex
	queueURLs map[string]string // queue URL in the rule → URL on the SDK's endpoint
}

// New checks cfg and builds the AWS clients. It logs, once, the actions it will skip because the local
// bridge does not carry out their type.
func New(cfg Config) (*Bridge, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	for _, r := range cfg.Rules {
		for i, a := range r.Payload.Actions {
			if t := rules.ActionType(a); !local(t) {
				cfg.Logger.Warn("rules bridge skips an action type it does not run locally",
					"rule", r.Name, "action", i, "type", t)
			}
		}
	}
	return &Bridge{
		cfg:       cfg,
		sqs:       sqs.NewFromConfig(cfg.AWS),
		kinesis:   kinesis.NewFromConfig(cfg.AWS),
		sns:       sns.NewFromConfig(cfg.AWS),
		ddb:       dynamodb.NewFromConfig(cfg.AWS),
		queueURLs: map[string]string{},
	}, nil
}

func local(actionType string) bool {
	for _, t := range rules.LocalActionTypes {
		if t == actionType {
			return true
		}
	}
	return false
}

// Failure is one failed action, as listed in AWS's error action message.
type Failure struct {
	FailedAction   string `json:"failedAction"`
	FailedResource string `json:"failedResource"`
	ErrorMessage   string `json:"errorMessage"`
}

// ErrorMessage is the payload an errorAction receives, in AWS's format: one per rule and message,
// listing every action of the rule that failed.
type ErrorMessage struct {
	RuleName              string    `json:"ruleName"`
	Topic                 string    `json:"topic"`
	CloudwatchTraceID     string    `json:"cloudwatchTraceId"`
	ClientID              string    `json:"clientId"`
	Base64OriginalPayload string    `json:"base64OriginalPayload"`
	Failures              []Failure `json:"failures"`
}

// RuleResult is what one rule did with a message.
type RuleResult struct {
	Rule string
	// Err is set when the rule could not be evaluated (e.g. a payload that is not JSON); its actions
	// did not run.
	Err error
	// Actions is how many actions ran (successfully or not); Skipped how many were of a type the bridge
	// does not run.
	Actions, Skipped int
	Failures         []Failure
	// ErrorAction is the errorAction's own error, when it ran and failed, or a note that there was none.
	ErrorAction error
}

// Handle evaluates every enabled rule on m and runs the actions of those that match, then the
// errorAction of any whose actions failed. It returns one result per rule that matched or failed to
// evaluate; failures are also logged. m is only read, but iotsql.Message caches its decoded payload, so
// one m must not be handled concurrently.
func (b *Bridge) Handle(ctx context.Context, m *iotsql.Message) []RuleResult {
	var out []RuleResult
	for _, r := range b.cfg.Rules {
		inv, err := r.Eval(m)
		if err != nil {
			b.cfg.Logger.Warn("rule could not evaluate the message", "rule", r.Name, "topic", m.Topic, "err", err)
			out = append(out, RuleResult{Rule: r.Name, Err: err})
			continue
		}
		if inv != nil {
			out = append(out, b.run(ctx, inv, m))
		}
	}
	return out
}

func (b *Bridge) run(ctx context.Context, inv *rules.Invocation, m *iotsql.Message) RuleResult {
	res := RuleResult{Rule: inv.Rule.Name}
	for _, a := range inv.Actions {
		t := rules.ActionType(a)
		if !local(t) {
			res.Skipped++
			continue
		}
		res.Actions++
		if err := b.do(ctx, a, inv.Output); err != nil {
			target := rules.ActionTarget(a)
			res.Failures = append(res.Failures, Failure{
				FailedAction:   strings.ToUpper(t[:1]) + t[1:] + "Action",
				FailedResource: target,
				ErrorMessage:   fmt.Sprintf("%v. Message arrived on: %s, Action: %s, Target: %s", err, m.Topic, t, target),
			})
		}
	}
	if len(res.Failures) == 0 {
		return res
	}
	b.cfg.Logger.Warn("rule actions failed", "rule", inv.Rule.Name, "topic", m.Topic, "failures", len(res.Failures),
		"first", res.Failures[0].ErrorMessage)
	if inv.ErrorAction == nil {
		res.ErrorAction = errors.New("the rule has no errorAction: the failure is only logged")
		return res
	}
	em := ErrorMessage{
		RuleName:              inv.Rule.Name,
		Topic:                 m.Topic,
		CloudwatchTraceID:     uuid.NewString(),
		ClientID:              m.ClientID,
		Base64OriginalPayload: base64.StdEncoding.EncodeToString(m.Payload),
		Failures:              res.Failures,
	}
	body, err := json.Marshal(em)
	if err != nil {
		res.ErrorAction = fmt.Errorf("encoding the error message: %w", err)
		return res
	}
	if err := b.do(ctx, *inv.ErrorAction, body); err != nil {
		res.ErrorAction = fmt.Errorf("errorAction %s: %w", rules.ActionType(*inv.ErrorAction), err)
		b.cfg.Logger.Error("rule errorAction failed; the message is lost", "rule", inv.Rule.Name, "topic", m.Topic, "err", err)
	}
	return res
}

// do carries out one rendered action with the SELECT output as its payload.
func (b *Bridge) do(ctx context.Context, a types.Action, output []byte) error {
	switch {
	case a.Sqs != nil:
		url, err := b.queueURL(ctx, aws.ToString(a.Sqs.QueueUrl))
		if err != nil {
			return err
		}
		body := rules.ActionPayload(a, output)
		if err := sqsBodyValid(body); err != nil {
			return fmt.Errorf("sqs SendMessage: %w", err)
		}
		_, err = b.sqs.SendMessage(ctx, &sqs.SendMessageInput{
			QueueUrl:    aws.String(url),
			MessageBody: aws.String(string(body)),
		})
		if err != nil {
			return fmt.Errorf("sqs SendMessage: %w", err)
		}
	case a.Kinesis != nil:
		key := aws.ToString(a.Kinesis.PartitionKey)
		if key == "" { // AWS picks a random key when the rule names none
			key = uuid.NewString()
		}
		_, err := b.kinesis.PutRecord(ctx, &kinesis.PutRecordInput{
			StreamName:   a.Kinesis.StreamName,
			PartitionKey: aws.String(key),
			Data:         output,
		})
		if err != nil {
			return fmt.Errorf("kinesis PutRecord: %w", err)
		}
	case a.Sns != nil:
		in := &sns.PublishInput{TargetArn: a.Sns.TargetArn, Message: aws.String(string(output))}
		if a.Sns.MessageFormat == types.MessageFormatJson {
			in.MessageStructure = aws.String("json")
		}
		if _, err := b.sns.Publish(ctx, in); err != nil {
			return fmt.Errorf("sns Publish: %w", err)
		}
	case a.DynamoDBv2 != nil && a.DynamoDBv2.PutItem != nil:
		item, err := Item(output)
		if err != nil {
			return err
		}
		_, err = b.ddb.PutItem(ctx, &dynamodb.PutItemInput{TableName: a.DynamoDBv2.PutItem.TableName, Item: item})
		if err != nil {
			return fmt.Errorf("dynamodb PutItem: %w", err)
		}
	case a.Republish != nil:
		if b.cfg.Republisher == nil {
			return errors.New("republish: no MQTT broker is attached to the rules bridge")
		}
		qos := aws.ToInt32(a.Republish.Qos)
		if qos < 0 || qos > 1 { // rules lint reports it; AWS IoT takes only these two
			return fmt.Errorf("republish: qos %d, must be 0 or 1", qos)
		}
		if err := b.cfg.Republisher.Republish(ctx, aws.ToString(a.Republish.Topic), output, byte(qos)); err != nil {
			return fmt.Errorf("republish: %w", err)
		}
	default:
		return fmt.Errorf("action type %q is not run by the local rules bridge", rules.ActionType(a))
	}
	return nil
}

// sqsBodyValid refuses a message body SQS would refuse (InvalidMessageContents): SQS takes only
// the XML character set in UTF-8. Checked here because the SDK would otherwise replace invalid UTF-8
// with U+FFFD on the way and deliver a changed message, where AWS fails the action (and runs the
// errorAction): a binary payload passed on by SELECT * needs useBase64.
func sqsBodyValid(body []byte) error {
	for i := 0; i < len(body); {
		r, size := utf8.DecodeRune(body[i:])
		ok := r == '\t' || r == '\n' || r == '\r' || (r >= 0x20 && r <= 0xD7FF) || (r >= 0xE000 && r <= 0xFFFD) || r >= 0x10000
		if !ok || (r == utf8.RuneError && size == 1) {
			return fmt.Errorf("InvalidMessageContents: invalid character in the message body at byte %d (binary payloads need useBase64: true)", i)
		}
		i += size
	}
	return nil
}

// queueURL maps a rule's queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>) to the queue's
// URL on the SDK's endpoint, by name, caching successes.
func (b *Bridge) queueURL(ctx context.Context, ruleURL string) (string, error) {
	b.mu.Lock()
	u, ok := b.queueURLs[ruleURL]
	b.mu.Unlock()
	if ok {
		return u, nil
	}
	account, name, err := rules.QueueURLParts(ruleURL)
	if err != nil {
		return "", err
	}
	out, err := b.sqs.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name), QueueOwnerAWSAccountId: aws.String(account)})
	if err != nil {
		return "", fmt.Errorf("sqs GetQueueUrl %s: %w", name, err)
	}
	u = aws.ToString(out.QueueUrl)
	b.mu.Lock()
	b.queueURLs[ruleURL] = u
	b.mu.Unlock()
	return u, nil
}

// Item converts a SELECT output (a JSON object) to a DynamoDB item as the dynamoDBv2 action does:
// strings to S, numbers to N (as written), booleans to BOOL, null to NULL, arrays to L, objects to M.
func Item(output []byte) (map[string]ddbtypes.AttributeValue, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(output, &obj); err != nil {
		return nil, fmt.Errorf("dynamoDBv2: the SELECT output must be a JSON object: %w", err)
	}
	item := make(map[string]ddbtypes.AttributeValue, len(obj))
	for k, raw := range obj {
		av, err := attributeValue(raw)
		if err != nil {
			return nil, fmt.Errorf("dynamoDBv2: %s: %w", k, err)
		}
		item[k] = av
	}
	return item, nil
}

func attributeValue(raw json.RawMessage) (ddbtypes.AttributeValue, error) {
	var x any
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	if err := dec.Decode(&x); err != nil {
		return nil, err
	}
	return toAttributeValue(x), nil
}

func toAttributeValue(x any) ddbtypes.AttributeValue {
	switch v := x.(type) {
	case string:
		return &ddbtypes.AttributeValueMemberS{Value: v}
	case json.Number:
		return &ddbtypes.AttributeValueMemberN{Value: v.String()}
	case bool:
		return &ddbtypes.AttributeValueMemberBOOL{Value: v}
	case []any:
		l := make([]ddbtypes.AttributeValue, len(v))
		for i, e := range v {
			l[i] = toAttributeValue(e)
		}
		return &ddbtypes.AttributeValueMemberL{Value: l}
	case map[string]any:
		m := make(map[string]ddbtypes.AttributeValue, len(v))
		for k, e := range v {
			m[k] = toAttributeValue(e)
		}
		return &ddbtypes.AttributeValueMemberM{Value: m}
	}
	return &ddbtypes.AttributeValueMemberNULL{Value: true}
}
