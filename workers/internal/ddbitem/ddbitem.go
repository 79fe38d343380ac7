// Package ddbitem reads and writes one DynamoDB item type with optimistic concurrency: every write is
// an UpdateItem conditional on the version it read, so concurrent workers and replays never overwrite each other's
// changes; a lost race re-reads and re-applies the change.
package ddbitem

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// API is the part of the DynamoDB client this package uses.
type API interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
}

// Client is everything the package uses (an alias kept for readability at call sites).
type Client = API

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
		before, err := attributevalue.MarshalMap(item)
		if err != nil {
			return zero, false, fmt.Errorf("encoding %s %s: %w", t.Name, key, err)
		}
		changed, err := change(&item, found)
		if err != nil || !changed {
			return item, false, err
		}
		in, err := t.updateInput(key, before, item, found, version)
		if err != nil {
			return zero, false, err
		}
		_, err = t.Client.UpdateItem(ctx, in)
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
		case <-time.After(time.Duration(1+rand.IntN(5<<attempt)) * time.Millisecond): // #nosec G404 -- retry jitter, not a secret
		}
	}
	return zero, false, fmt.Errorf("updating %s %s: %w", t.Name, key, ErrConflict)
}

// MarkNotified sets <attr>.notified = true (and drops the claim) on the item, if <attr>.id is still
// id, in one conditional UpdateItem that also bumps the version, so writers holding an older read
// fail their condition and re-read. It needs no read and never loses a race, which keeps the window
// between a sent notification and its mark as short as one call. It reports whether it marked.
func (t Table[T]) MarkNotified(ctx context.Context, key, attr, id string) (bool, error) {
	_, err := t.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           aws.String(t.Name),
		Key:                 map[string]types.AttributeValue{t.KeyAttr: &types.AttributeValueMemberS{Value: key}},
		UpdateExpression:    aws.String("SET #a.#n = :t, #v = #v + :one REMOVE #a.#cb, #a.#cu"),
		ConditionExpression: aws.String("#a.#id = :id"),
		ExpressionAttributeNames: map[string]string{"#a": attr, "#n": "notified", "#v": VersionAttr,
			"#cb": "claimedBy", "#cu": "claimedUntil", "#id": "id"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":t": &types.AttributeValueMemberBOOL{Value: true}, ":one": &types.AttributeValueMemberN{Value: "1"},
			":id": &types.AttributeValueMemberS{Value: id},
		},
	})
	if err != nil {
		var ccf *types.ConditionalCheckFailedException
		if errors.As(err, &ccf) {
			return false, nil
		}
		return false, fmt.Errorf("marking %s %s %s notified: %w", t.Name, key, attr, err)
	}
	return true, nil
}

// Release drops owner's claim on <attr> (id) when nothing was sent, so the retry of the same message
// can claim and send at once instead of waiting out the lease. It is conditional on the claim still
// being owner's and the notice still pending; it reports whether it released.
func (t Table[T]) Release(ctx context.Context, key, attr, id, owner string) (bool, error) {
	_, err := t.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           aws.String(t.Name),
		Key:                 map[string]types.AttributeValue{t.KeyAttr: &types.AttributeValueMemberS{Value: key}},
		UpdateExpression:    aws.String("SET #v = #v + :one REMOVE #a.#cb, #a.#cu"),
		ConditionExpression: aws.String("#a.#id = :id AND #a.#cb = :owner AND #a.#n = :f"),
		ExpressionAttributeNames: map[string]string{"#a": attr, "#n": "notified", "#v": VersionAttr,
			"#cb": "claimedBy", "#cu": "claimedUntil", "#id": "id"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":f": &types.AttributeValueMemberBOOL{Value: false}, ":one": &types.AttributeValueMemberN{Value: "1"},
			":id": &types.AttributeValueMemberS{Value: id}, ":owner": &types.AttributeValueMemberS{Value: owner},
		},
	})
	if err != nil {
		var ccf *types.ConditionalCheckFailedException
		if errors.As(err, &ccf) {
			return false, nil
		}
		return false, fmt.Errorf("releasing %s %s %s: %w", t.Name, key, attr, err)
	}
	return true, nil
}

// updateInput is the conditional UpdateItem that turns the stored item (before) into after: it sets
// the attributes T has, removes those T no longer has (cleared omitempty fields) and leaves any other
// attribute alone, so attributes written by someone else (an operator's note, a TTL) survive.
func (t Table[T]) updateInput(key string, before map[string]types.AttributeValue, item T, found bool, version int64) (*dynamodb.UpdateItemInput, error) {
	after, err := attributevalue.MarshalMap(item)
	if err != nil {
		return nil, fmt.Errorf("encoding %s %s: %w", t.Name, key, err)
	}
	delete(after, t.KeyAttr)
	delete(after, VersionAttr)
	names := map[string]string{"#ver": VersionAttr}
	values := map[string]types.AttributeValue{":ver": &types.AttributeValueMemberN{Value: strconv.FormatInt(version+1, 10)}}
	attrs := make([]string, 0, len(after))
	for a := range after {
		attrs = append(attrs, a)
	}
	slices.Sort(attrs) // a stable expression for the same change
	sets := []string{"#ver = :ver"}
	for i, a := range attrs {
		n, v := "#a"+strconv.Itoa(i), ":a"+strconv.Itoa(i)
		names[n], values[v] = a, after[a]
		sets = append(sets, n+" = "+v)
	}
	var removes []string
	gone := make([]string, 0)
	for a := range before {
		if _, still := after[a]; !still && a != t.KeyAttr && a != VersionAttr {
			gone = append(gone, a)
		}
	}
	slices.Sort(gone)
	for i, a := range gone {
		n := "#r" + strconv.Itoa(i)
		names[n] = a
		removes = append(removes, n)
	}
	expr := "SET " + strings.Join(sets, ", ")
	if len(removes) > 0 {
		expr += " REMOVE " + strings.Join(removes, ", ")
	}
	in := &dynamodb.UpdateItemInput{
		TableName:                 aws.String(t.Name),
		Key:                       map[string]types.AttributeValue{t.KeyAttr: &types.AttributeValueMemberS{Value: key}},
		UpdateExpression:          aws.String(expr),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: values,
	}
	if found {
		in.ConditionExpression = aws.String("#ver = :old")
		values[":old"] = &types.AttributeValueMemberN{Value: strconv.FormatInt(version, 10)}
	} else {
		in.ConditionExpression = aws.String("attribute_not_exists(#key)")
		names["#key"] = t.KeyAttr
	}
	return in, nil
}
