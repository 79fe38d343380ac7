package rules

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"
)

// DescribeAction says in one line what an action does, e.g.
// `kinesis → stream thingpipe-telemetry, partition key "dev-42"`.
func DescribeAction(a types.Action) string {
	switch {
	case a.Sqs != nil:
		s := "sqs → queue " + aws.ToString(a.Sqs.QueueUrl)
		if aws.ToBool(a.Sqs.UseBase64) {
			s += " (base64)"
		}
		return s
	case a.Kinesis != nil:
		s := "kinesis → stream " + aws.ToString(a.Kinesis.StreamName)
		if a.Kinesis.PartitionKey != nil {
			s += fmt.Sprintf(", partition key %q", *a.Kinesis.PartitionKey)
		}
		return s
	case a.Sns != nil:
		f := a.Sns.MessageFormat
		if f == "" {
			f = types.MessageFormatRaw
		}
		return fmt.Sprintf("sns → topic %s (%s)", aws.ToString(a.Sns.TargetArn), f)
	case a.DynamoDBv2 != nil && a.DynamoDBv2.PutItem != nil:
		return "dynamoDBv2 → PutItem into table " + aws.ToString(a.DynamoDBv2.PutItem.TableName)
	case a.Republish != nil:
		return fmt.Sprintf("republish → topic %s (qos %d)", aws.ToString(a.Republish.Topic), aws.ToInt32(a.Republish.Qos))
	}
	o := ActionJSON(a)
	if len(o) == 1 {
		b, _ := json.Marshal(o[0].Value)
		return fmt.Sprintf("%s → %s", o[0].Key, b)
	}
	b, _ := json.Marshal(o)
	return string(b)
}

// WriteInvocations prints, for a person, what the matched rules do with one message. indent prefixes
// every line.
func WriteInvocations(w io.Writer, indent string, invs []*Invocation) {
	if len(invs) == 0 {
		fmt.Fprintf(w, "%sno rule matched\n", indent)
		return
	}
	for _, inv := range invs {
		fmt.Fprintf(w, "%srule %s matched (%s)\n", indent, inv.Rule.Name, inv.Rule.Path)
		for _, a := range inv.Actions {
			fmt.Fprintf(w, "%s  %s\n", indent, DescribeAction(a))
			fmt.Fprintf(w, "%s    %s\n", indent, strings.TrimSpace(string(ActionPayload(a, inv.Output))))
		}
		if len(inv.Actions) == 0 {
			fmt.Fprintf(w, "%s  (no actions)\n", indent)
		}
		if inv.ErrorAction != nil {
			fmt.Fprintf(w, "%s  if an action fails: %s\n", indent, DescribeAction(*inv.ErrorAction))
		}
	}
}
