package ddbitem

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/thingpipe/thingpipe/internal/awstest"
	"github.com/thingpipe/thingpipe/workers/internal/awsfixture"
)

func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }

type counter struct {
	N    int `dynamodbav:"n"`
	Note struct {
		ID       string `dynamodbav:"id"`
		Notified bool   `dynamodbav:"notified"`
	} `dynamodbav:"note"`
}

// Optimistic concurrency must lose no update: 8 workers × 10 increments = 80.
func TestUpdateLosesNoUpdates(t *testing.T) {
	cfg := awstest.Config(t)
	awsfixture.SerializeDynamoDB(&cfg)
	name := awstest.Name(t, "items")
	awsfixture.Table(t, cfg, name, "k")
	var wg sync.WaitGroup
	for range 8 {
		tbl := Table[counter]{Client: dynamodb.NewFromConfig(cfg), Name: name, KeyAttr: "k", Attempts: 100}
		wg.Go(func() {
			for range 10 {
				if _, _, err := tbl.Update(context.Background(), "c", func(c *counter, _ bool) (bool, error) { c.N++; return true, nil }); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	tbl := Table[counter]{Client: dynamodb.NewFromConfig(cfg), Name: name, KeyAttr: "k"}
	c, version, found, err := tbl.Get(context.Background(), "c")
	if err != nil || !found || c.N != 80 || version != 80 {
		t.Fatalf("counter %+v version %d found %v err %v; want 80 and version 80", c, version, found, err)
	}
	// No change, no write.
	if _, wrote, err := tbl.Update(context.Background(), "c", func(*counter, bool) (bool, error) { return false, nil }); wrote || err != nil {
		t.Errorf("no-op update wrote=%v err=%v", wrote, err)
	}
	if _, _, err := tbl.Update(context.Background(), "c", func(*counter, bool) (bool, error) { return false, errors.New("boom") }); err == nil {
		t.Error("change error not returned")
	}
}

func TestMarkNotifiedBumpsVersionAndChecksID(t *testing.T) {
	cfg := awstest.Config(t)
	name := awstest.Name(t, "items")
	awsfixture.Table(t, cfg, name, "k")
	client := dynamodb.NewFromConfig(cfg)
	tbl := Table[counter]{Client: client, Name: name, KeyAttr: "k"}
	if _, _, err := tbl.Update(context.Background(), "c", func(c *counter, _ bool) (bool, error) { c.Note.ID = "n1"; return true, nil }); err != nil {
		t.Fatal(err)
	}
	if ok, err := tbl.MarkNotified(context.Background(), "c", "note", "other"); ok || err != nil {
		t.Errorf("marked a different notice: %v %v", ok, err)
	}
	if ok, err := tbl.MarkNotified(context.Background(), "c", "note", "n1"); !ok || err != nil {
		t.Fatalf("mark: %v %v", ok, err)
	}
	c, version, _, _ := tbl.Get(context.Background(), "c")
	if !c.Note.Notified || version != 2 {
		t.Errorf("after mark: %+v version %d", c, version)
	}
}

// TestMotoNeedsSerializedWrites documents why the concurrent tests call SerializeDynamoDB: with it,
// exactly one of eight concurrent conditional updates wins, as on DynamoDB. (Without it moto
// sometimes lets two win.)
func TestMotoNeedsSerializedWrites(t *testing.T) {
	cfg := awstest.Config(t)
	awsfixture.SerializeDynamoDB(&cfg)
	table := awstest.Name(t, "t")
	awsfixture.Table(t, cfg, table, "k")
	c := dynamodb.NewFromConfig(cfg)
	for round := range 10 {
		var wins atomic.Int64
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				_, err := c.UpdateItem(context.Background(), &dynamodb.UpdateItemInput{
					TableName:                 aws.String(table),
					Key:                       map[string]types.AttributeValue{"k": &types.AttributeValueMemberS{Value: fmt.Sprint("key", round)}},
					UpdateExpression:          aws.String("SET u = :u"),
					ConditionExpression:       aws.String("attribute_not_exists(k) OR u = :u"),
					ExpressionAttributeValues: map[string]types.AttributeValue{":u": &types.AttributeValueMemberS{Value: fmt.Sprint("user", w)}},
				})
				var ccf *types.ConditionalCheckFailedException
				if err == nil {
					wins.Add(1)
				} else if !errors.As(err, &ccf) {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Errorf("round %d: %d conditional updates succeeded", round, wins.Load())
		}
	}
}

type doc struct {
	A string `dynamodbav:"a,omitempty"`
	B string `dynamodbav:"b,omitempty"`
}

// Writes set T's attributes, remove the ones T cleared and keep everyone else's.
func TestUpdateKeepsForeignAttributes(t *testing.T) {
	cfg := awstest.Config(t)
	name := awstest.Name(t, "items")
	awsfixture.Table(t, cfg, name, "k")
	client := dynamodb.NewFromConfig(cfg)
	tbl := Table[doc]{Client: client, Name: name, KeyAttr: "k"}
	ctx := context.Background()
	if _, _, err := tbl.Update(ctx, "x", func(d *doc, exists bool) (bool, error) { d.A, d.B = "a", "b"; return !exists, nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := client.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String(name),
		Key:              map[string]types.AttributeValue{"k": &types.AttributeValueMemberS{Value: "x"}},
		UpdateExpression: aws.String("SET note = :n"), ExpressionAttributeValues: map[string]types.AttributeValue{":n": &types.AttributeValueMemberS{Value: "ops"}},
	}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tbl.Update(ctx, "x", func(d *doc, _ bool) (bool, error) { d.A, d.B = "a2", ""; return true, nil }); err != nil {
		t.Fatal(err)
	}
	out, err := client.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(name), Key: map[string]types.AttributeValue{"k": &types.AttributeValueMemberS{Value: "x"}}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for k, v := range out.Item {
		switch v := v.(type) {
		case *types.AttributeValueMemberS:
			got[k] = v.Value
		case *types.AttributeValueMemberN:
			got[k] = v.Value
		}
	}
	if fmt.Sprint(got) != "map[a:a2 k:x note:ops version:2]" {
		t.Errorf("item %v", got)
	}
}
