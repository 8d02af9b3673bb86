package export

import (
	"bytes"
	"errors"
	"strconv"

	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	auditv1 "github.com/auditlog/auditlog/proto/audit/v1"
)

// ExportEvents is the gRPC twin of ServeHTTP: the same export, sent as
// google.api.HttpBody messages of about Config.FlushBytes each, the first
// one carrying the content type (and the CSV header row). A failure after
// the first message ends the stream with a non-OK status, after a last
// message holding the error marker. A complete export ends with OK and the
// trailer metadata x-export-status: complete, x-export-rows: N.
func (s *Service) ExportEvents(req *auditv1.ExportEventsRequest, stream auditv1.AuditService_ExportEventsServer) error {
	ctx := stream.Context()
	p, err := s.newPlan(ctx, req)
	if err != nil {
		return s.toStatus(ctx, err)
	}
	res, err := s.run(ctx, p, &grpcSink{stream: stream, contentType: p.contentType(), id: p.id})
	if err != nil {
		st := s.toStatus(ctx, err)
		if errors.Is(err, errBusy) {
			if withRetry, derr := status.Convert(st).WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(s.cfg.RetryAfter)}); derr == nil {
				st = withRetry.Err()
			}
		}
		return st
	}
	stream.SetTrailer(metadata.Pairs("x-export-status", "complete", "x-export-rows", strconv.FormatInt(res.rows, 10)))
	return nil
}

// grpcSink sends an export as HttpBody messages.
type grpcSink struct {
	stream      auditv1.AuditService_ExportEventsServer
	contentType string
	id          string
	sent        bool
}

func (s *grpcSink) start() error {
	return s.stream.SetHeader(metadata.Pairs("x-export-id", s.id))
}

func (s *grpcSink) write(p []byte) error {
	// gRPC may hold on to a sent message, so it gets its own copy of the
	// reused buffer.
	msg := &httpbody.HttpBody{Data: bytes.Clone(p)}
	if !s.sent {
		msg.ContentType = s.contentType
		s.sent = true
	}
	return s.stream.Send(msg)
}
