package kinesis

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Lease table attributes. The table's only key is leaseKey = group#stream#shardId.
const (
	attrLeaseKey    = "leaseKey"
	attrGroupStream = "groupStream"
	attrShardID     = "shardId"
	attrParents     = "parents"
	attrOwner       = "owner"
	attrCounter     = "counter"
	attrCheckpoint  = "checkpoint"
	attrStartAt     = "startAt"
)

// checkpointShardEnd marks a shard read to its end with every record acked.
const checkpointShardEnd = "SHARD_END"

// lease is one item of the lease table.
type lease struct {
	Key         string   `dynamodbav:"leaseKey"`
	GroupStream string   `dynamodbav:"groupStream"`
	ShardID     string   `dynamodbav:"shardId"`
	Parents     []string `dynamodbav:"parents,stringset,omitempty"`
	Owner       string   `dynamodbav:"owner,omitempty"`
	Counter     int64    `dynamodbav:"counter"`
	Checkpoint  string   `dynamodbav:"checkpoint,omitempty"`
	// StartAt is when the group began reading the shard at LATEST (RFC 3339, the first owner's
	// clock). Owners without a checkpoint start there, so a lease moving before the first
	// checkpoint does not skip records.
	StartAt string `dynamodbav:"startAt,omitempty"`
}

// errLeaseLost means a conditional write found the lease owned by someone else (or changed).
var errLeaseLost = errors.New("lease lost")

// leaseTable reads and writes the leases of one consumer group on one stream. Every write that
// changes ownership or progress is conditional, so two workers can never both own a lease.
type leaseTable struct {
	client LeaseClient
	table  string
	group  string
	stream string
}

func (t *leaseTable) groupStream() string       { return t.group + "#" + t.stream }
func (t *leaseTable) key(shardID string) string { return t.groupStream() + "#" + shardID }

func (t *leaseTable) keyAV(shardID string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{attrLeaseKey: &types.AttributeValueMemberS{Value: t.key(shardID)}}
}

// ensureLeaseTable creates the lease table if it is missing and waits until it is ACTIVE.
func ensureLeaseTable(ctx context.Context, c LeaseClient, table string) error {
	_, err := c.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(attrLeaseKey), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(attrLeaseKey), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("kinesis: creating lease table %s: %w", table, err)
	}
	for attempt := 1; ; attempt++ {
		out, err := c.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
		if err != nil {
			return fmt.Errorf("kinesis: describing lease table %s: %w", table, err)
		}
		if out.Table != nil && out.Table.TableStatus == types.TableStatusActive {
			return nil
		}
		if err := sleepCtx(ctx, backoff(100*time.Millisecond, 2*time.Second, attempt)); err != nil {
			return err
		}
	}
}

// scan returns every lease of the group on the stream (a strongly consistent scan).
func (t *leaseTable) scan(ctx context.Context) ([]lease, error) {
	expr, err := expression.NewBuilder().WithFilter(expression.Name(attrGroupStream).Equal(expression.Value(t.groupStream()))).Build()
	if err != nil {
		return nil, err
	}
	in := &dynamodb.ScanInput{
		TableName:                 aws.String(t.table),
		ConsistentRead:            aws.Bool(true),
		FilterExpression:          expr.Filter(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
	}
	var leases []lease
	for {
		out, err := t.client.Scan(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("kinesis: scanning lease table %s: %w", t.table, err)
		}
		for _, item := range out.Items {
			var l lease
			if err := attributevalue.UnmarshalMap(item, &l); err != nil {
				return nil, fmt.Errorf("kinesis: lease item in %s: %w", t.table, err)
			}
			leases = append(leases, l)
		}
		if len(out.LastEvaluatedKey) == 0 {
			return leases, nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// create adds a free lease for a shard unless one exists.
func (t *leaseTable) create(ctx context.Context, shardID string, parents []string) error {
	item, err := attributevalue.MarshalMap(lease{Key: t.key(shardID), GroupStream: t.groupStream(), ShardID: shardID, Parents: parents})
	if err != nil {
		return err
	}
	expr, err := expression.NewBuilder().WithCondition(expression.AttributeNotExists(expression.Name(attrLeaseKey))).Build()
	if err != nil {
		return err
	}
	_, err = t.client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                aws.String(t.table),
		Item:                     item,
		ConditionExpression:      expr.Condition(),
		ExpressionAttributeNames: expr.Names(),
	})
	if err != nil && !isConditionFailed(err) {
		return fmt.Errorf("kinesis: creating lease %s: %w", t.key(shardID), err)
	}
	return nil
}

// take makes me the owner of a lease whose counter is still the one observed, and returns the
// lease as written (so the checkpoint is the latest).
func (t *leaseTable) take(ctx context.Context, shardID string, observedCounter int64, me string) (lease, error) {
	update := expression.Set(expression.Name(attrOwner), expression.Value(me)).
		Set(expression.Name(attrCounter), expression.Name(attrCounter).Plus(expression.Value(1)))
	cond := expression.Name(attrCounter).Equal(expression.Value(observedCounter))
	var l lease
	out, err := t.update(ctx, shardID, update, cond, types.ReturnValueAllNew)
	if err != nil {
		return l, err
	}
	if err := attributevalue.UnmarshalMap(out.Attributes, &l); err != nil {
		return l, fmt.Errorf("kinesis: lease item %s: %w", t.key(shardID), err)
	}
	return l, nil
}

// renew moves the counter of a lease I own, which tells the others I am alive.
func (t *leaseTable) renew(ctx context.Context, shardID, me string) error {
	update := expression.Set(expression.Name(attrCounter), expression.Name(attrCounter).Plus(expression.Value(1)))
	_, err := t.update(ctx, shardID, update, expression.Name(attrOwner).Equal(expression.Value(me)), types.ReturnValueNone)
	return err
}

// checkpoint records progress on a lease I own; with release it also gives the lease up.
func (t *leaseTable) checkpoint(ctx context.Context, shardID, me, seq string, release bool) error {
	var update expression.UpdateBuilder
	if seq != "" {
		update = update.Set(expression.Name(attrCheckpoint), expression.Value(seq))
	}
	if release {
		update = update.Remove(expression.Name(attrOwner)).
			Set(expression.Name(attrCounter), expression.Name(attrCounter).Plus(expression.Value(1)))
	}
	if seq == "" && !release {
		return nil
	}
	_, err := t.update(ctx, shardID, update, expression.Name(attrOwner).Equal(expression.Value(me)), types.ReturnValueNone)
	return err
}

// pinStart records, once per lease, the time reading from LATEST began, and returns the time
// recorded (an earlier owner's, if there was one).
func (t *leaseTable) pinStart(ctx context.Context, shardID, me string, now time.Time) (time.Time, error) {
	update := expression.Set(expression.Name(attrStartAt),
		expression.IfNotExists(expression.Name(attrStartAt), expression.Value(now.UTC().Format(time.RFC3339Nano))))
	out, err := t.update(ctx, shardID, update, expression.Name(attrOwner).Equal(expression.Value(me)), types.ReturnValueAllNew)
	if err != nil {
		return time.Time{}, err
	}
	var got struct {
		StartAt string `dynamodbav:"startAt"`
	}
	if err := attributevalue.UnmarshalMap(out.Attributes, &got); err != nil {
		return time.Time{}, fmt.Errorf("kinesis: lease item %s: %w", t.key(shardID), err)
	}
	ts, err := time.Parse(time.RFC3339Nano, got.StartAt)
	if err != nil {
		return time.Time{}, fmt.Errorf("kinesis: lease item %s: startAt: %w", t.key(shardID), err)
	}
	return ts, nil
}

func (t *leaseTable) update(ctx context.Context, shardID string, update expression.UpdateBuilder, cond expression.ConditionBuilder, rv types.ReturnValue) (*dynamodb.UpdateItemOutput, error) {
	expr, err := expression.NewBuilder().WithUpdate(update).WithCondition(cond).Build()
	if err != nil {
		return nil, err
	}
	out, err := t.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(t.table),
		Key:                       t.keyAV(shardID),
		UpdateExpression:          expr.Update(),
		ConditionExpression:       expr.Condition(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
		ReturnValues:              rv,
	})
	if isConditionFailed(err) {
		return nil, errLeaseLost
	}
	if err != nil {
		return nil, fmt.Errorf("kinesis: updating lease %s: %w", t.key(shardID), err)
	}
	return out, nil
}

func isConditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	return err != nil && errors.As(err, &ccf)
}
