// Package ddbitem reads and writes one DynamoDB item type with optimistic concurrency: every write is
// conditional on the version it read, so concurrent workers and replays never overwrite each other's
// changes; a lost race re-reads and re-applies the change.
package ddbitem

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// API is the part of the DynamoDB client this package uses.
type API interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
}

// VersionAttr is the attribute holding the item's version (a number, 1 for a new item).
const VersionAttr = "version"

// ErrConflict is returned when the item kept changing under us for every attempt; it is retryable.
var ErrConflict = errors.New("item changed concurrently on every attempt")

// Table is one table whose items are T, keyed by a string partition key.
type Table[T any] struct {
	Client  API
	Name    string
	KeyAttr string
	// Attempts bounds re-reads after lost races (default 8).
	Attempts int
}

// Get reads the item with a strongly consistent read.
func (t Table[T]) Get(ctx context.Context, key string) (item T, version int64, found bool, err error) {
	out, err := t.Client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(t.Name),
		Key:            map[string]types.AttributeValue{t.KeyAttr: &types.AttributeValueMemberS{Value: key}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return item, 0, false, fmt.Errorf("reading %s %s: %w", t.Name, key, err)
	}
	if out.Item == nil {
		return item, 0, false, nil
	}
	if err := attributevalue.UnmarshalMap(out.Item, &item); err != nil {
		return item, 0, false, fmt.Errorf("decoding %s %s: %w", t.Name, key, err)
	}
	if v, ok := out.Item[VersionAttr].(*types.AttributeValueMemberN); ok {
		version, _ = strconv.ParseInt(v.Value, 10, 64)
	}
	return item, version, true, nil
}

// Update reads the item (zero T if absent), lets change modify it and, when change reports a change,
// writes it back on condition that nobody wrote it since the read. A lost race repeats the whole
// read-change-write, so change must be a pure function of the item it is given. It returns the item
// as stored afterwards and whether this call wrote it.
func (t Table[T]) Update(ctx context.Context, key string, change func(item *T, exists bool) (bool, error)) (T, bool, error) {
	attempts := t.Attempts
	if attempts <= 0 {
		attempts = 8
	}
	var zero T
	for attempt := 0; attempt < attempts; attempt++ {
		item, version, found, err := t.Get(ctx, key)
		if err != nil {
			return zero, false, err
		}
		changed, err := change(&item, found)
		if err != nil || !changed {
			return item, false, err
		}
		av, err := attributevalue.MarshalMap(item)
		if err != nil {
			return zero, false, fmt.Errorf("encoding %s %s: %w", t.Name, key, err)
		}
		av[t.KeyAttr] = &types.AttributeValueMemberS{Value: key}
		av[VersionAttr] = &types.AttributeValueMemberN{Value: strconv.FormatInt(version+1, 10)}
		in := &dynamodb.PutItemInput{TableName: aws.String(t.Name), Item: av}
		if found {
			in.ConditionExpression = aws.String("#v = :v")
			in.ExpressionAttributeNames = map[string]string{"#v": VersionAttr}
			in.ExpressionAttributeValues = map[string]types.AttributeValue{":v": &types.AttributeValueMemberN{Value: strconv.FormatInt(version, 10)}}
		} else {
			in.ConditionExpression = aws.String("attribute_not_exists(#k)")
			in.ExpressionAttributeNames = map[string]string{"#k": t.KeyAttr}
		}
		_, err = t.Client.PutItem(ctx, in)
		if err == nil {
			return item, true, nil
		}
		var ccf *types.ConditionalCheckFailedException
		if !errors.As(err, &ccf) {
			return zero, false, fmt.Errorf("writing %s %s: %w", t.Name, key, err)
		}
		// Lost a race: back off a little (jittered, so two workers do not collide again) and retry.
		select {
		case <-ctx.Done():
			return zero, false, ctx.Err()
		case <-time.After(time.Duration(1+rand.IntN(5<<attempt)) * time.Millisecond):
		}
	}
	return zero, false, fmt.Errorf("updating %s %s: %w", t.Name, key, ErrConflict)
}
