package archival

import (
	"bytes"
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// S3API is the part of the S3 client the store uses.
type S3API interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}

// S3Store writes objects to one bucket.
type S3Store struct {
	client S3API
	bucket string
}

// NewS3Store returns a store for bucket.
func NewS3Store(client S3API, bucket string) *S3Store {
	return &S3Store{client: client, bucket: bucket}
}

// Put writes body at key, replacing any object there (a retried batch overwrites itself).
func (s *S3Store) Put(ctx context.Context, key string, body []byte) error {
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:      aws.String(s.bucket),
		Key:         aws.String(key),
		Body:        bytes.NewReader(body),
		ContentType: aws.String("application/gzip"),
		// Not Content-Encoding: clients must get the .gz bytes as stored, not transparently inflated.
		ContentLength: aws.Int64(int64(len(body))),
	})
	if err != nil {
		return fmt.Errorf("writing s3://%s/%s: %w", s.bucket, key, err)
	}
	return nil
}
