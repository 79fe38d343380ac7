package binding

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// ErrAlreadyBound: the device is bound to another user.
var ErrAlreadyBound = errors.New("device is bound to another user")

// DynamoAPI is the part of the DynamoDB client the stores use.
type DynamoAPI interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	Query(ctx context.Context, in *dynamodb.QueryInput, opts ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
}

// DynamoStore keeps bindings in thingpipe-bindings and reads device states from thingpipe-devices.
type DynamoStore struct {
	client   DynamoAPI
	bindings string
	index    string
	devices  string
}

// NewDynamoStore returns a store on the given tables; index is the GSI on userId.
func NewDynamoStore(client DynamoAPI, bindingsTable, userIndex, devicesTable string) *DynamoStore {
	return &DynamoStore{client: client, bindings: bindingsTable, index: userIndex, devices: devicesTable}
}

// Bind binds user to thing with one conditional write: it succeeds when the device is unbound or
// already bound to the same user (keeping the first requestId and boundAt), and fails with
// ErrAlreadyBound when another user holds it. It returns the stored binding.
func (s *DynamoStore) Bind(ctx context.Context, thing, user, requestID string, nowMs int64) (Binding, error) {
	out, err := s.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           aws.String(s.bindings),
		Key:                 map[string]types.AttributeValue{"thingName": &types.AttributeValueMemberS{Value: thing}},
		UpdateExpression:    aws.String("SET userId = :u, requestId = if_not_exists(requestId, :r), boundAt = if_not_exists(boundAt, :t)"),
		ConditionExpression: aws.String("attribute_not_exists(thingName) OR userId = :u"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":u": &types.AttributeValueMemberS{Value: user},
			":r": &types.AttributeValueMemberS{Value: requestID},
			":t": &types.AttributeValueMemberN{Value: strconv.FormatInt(nowMs, 10)},
		},
		ReturnValues: types.ReturnValueAllNew,
	})
	if err != nil {
		var ccf *types.ConditionalCheckFailedException
		if errors.As(err, &ccf) {
			return Binding{}, ErrAlreadyBound
		}
		return Binding{}, fmt.Errorf("binding %s to %s: %w", thing, user, err)
	}
	var b Binding
	if err := attributevalue.UnmarshalMap(out.Attributes, &b); err != nil {
		return Binding{}, fmt.Errorf("decoding binding of %s: %w", thing, err)
	}
	return b, nil
}

// Get returns thing's binding.
func (s *DynamoStore) Get(ctx context.Context, thing string) (Binding, bool, error) {
	out, err := s.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(s.bindings), ConsistentRead: aws.Bool(true),
		Key: map[string]types.AttributeValue{"thingName": &types.AttributeValueMemberS{Value: thing}},
	})
	if err != nil {
		return Binding{}, false, fmt.Errorf("reading binding of %s: %w", thing, err)
	}
	if out.Item == nil {
		return Binding{}, false, nil
	}
	var b Binding
	if err := attributevalue.UnmarshalMap(out.Item, &b); err != nil {
		return Binding{}, false, fmt.Errorf("decoding binding of %s: %w", thing, err)
	}
	return b, true, nil
}

// QueryByUser returns every device bound to user, through the userId index (eventually consistent,
// as every GSI read is).
func (s *DynamoStore) QueryByUser(ctx context.Context, user string) ([]Binding, error) {
	p := dynamodb.NewQueryPaginator(s.client, &dynamodb.QueryInput{
		TableName:                 aws.String(s.bindings),
		IndexName:                 aws.String(s.index),
		KeyConditionExpression:    aws.String("userId = :u"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":u": &types.AttributeValueMemberS{Value: user}},
	})
	var all []Binding
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("querying bindings of %s: %w", user, err)
		}
		var page []Binding
		if err := attributevalue.UnmarshalListOfMaps(out.Items, &page); err != nil {
			return nil, fmt.Errorf("decoding bindings of %s: %w", user, err)
		}
		all = append(all, page...)
	}
	return all, nil
}

// DeviceStatus reads thing's state from the devices table (strongly consistent).
func (s *DynamoStore) DeviceStatus(ctx context.Context, thing string) (DeviceStatus, error) {
	out, err := s.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:                aws.String(s.devices),
		Key:                      map[string]types.AttributeValue{"thingName": &types.AttributeValueMemberS{Value: thing}},
		ConsistentRead:           aws.Bool(true),
		ProjectionExpression:     aws.String("#s"),
		ExpressionAttributeNames: map[string]string{"#s": "state"},
	})
	if err != nil {
		return DeviceStatus{}, fmt.Errorf("reading device %s: %w", thing, err)
	}
	if out.Item == nil {
		return DeviceStatus{}, nil
	}
	st, _ := out.Item["state"].(*types.AttributeValueMemberS)
	if st == nil {
		return DeviceStatus{Found: true}, nil
	}
	return DeviceStatus{Found: true, State: st.Value}, nil
}
