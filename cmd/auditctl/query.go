package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/auditlog/auditlog/internal/cli"
	"github.com/auditlog/auditlog/internal/config"
	"github.com/auditlog/auditlog/internal/event"
	auditv1 "github.com/auditlog/auditlog/proto/audit/v1"
)

// clientFlags say how auditctl reaches the gRPC API.
type clientFlags struct {
	addr     string
	token    string
	insecure bool
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	c.addr = "localhost:9090"
	fs.StringVar(&c.addr, "addr", c.addr, "gRPC `host:port` of auditlog serve")
	fs.StringVar(&c.token, "token", "", "API token, sent as `Authorization: Bearer <token>`")
	fs.BoolVar(&c.insecure, "insecure", false, "plaintext gRPC instead of TLS (local servers)")
}

func (c *clientFlags) dial() (auditv1.AuditServiceClient, func(), error) {
	creds := insecure.NewCredentials()
	if !c.insecure {
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20))}
	if c.token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{token: c.token, secure: !c.insecure}))
	}
	conn, err := grpc.NewClient(c.addr, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("--addr %s: %w", c.addr, err)
	}
	return auditv1.NewAuditServiceClient(conn), func() { _ = conn.Close() }, nil
}

type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.secure }

// multi is a repeatable flag: every occurrence adds a value (values may hold
// commas).
type multi []string

func (m *multi) String() string { return strings.Join(*m, ",") }

func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

// filterFlags are the shared filters of ListEvents, StreamEvents and
// ExportEvents.
type filterFlags struct {
	scopeID, action, actorID, actorType, actorName    multi
	targetID, targetType, targetName, requestID, meta multi
	version                                           multi
	success, since, until, q                          string
}

func (f *filterFlags) register(fs *flag.FlagSet) {
	fs.Var(&f.scopeID, "scope-id", "scope (account) `id`; repeat for several")
	fs.Var(&f.action, "action", "`action`; a trailing * is a prefix (workflow.job.*); repeat for several")
	fs.Var(&f.actorID, "actor-id", "actor `id`; repeat for several")
	fs.Var(&f.actorType, "actor-type", "actor `type`; repeat for several")
	fs.Var(&f.actorName, "actor-name", "actor `name`; repeat for several")
	fs.Var(&f.targetID, "target-id", "target `id`; repeat for several")
	fs.Var(&f.targetType, "target-type", "target `type`; repeat for several")
	fs.Var(&f.targetName, "target-name", "target `name`; repeat for several")
	fs.Var(&f.requestID, "request-id", "request `id`; repeat for several")
	fs.Var(&f.meta, "metadata", "metadata `key=value`; repeat, all must match")
	fs.Var(&f.version, "version", "schema `version`; repeat for several")
	fs.StringVar(&f.success, "success", "", "only successful (true) or failed (false) events")
	fs.StringVar(&f.since, "since", "", "RFC 3339 `time` (inclusive)")
	fs.StringVar(&f.until, "until", "", "RFC 3339 `time` (exclusive)")
	fs.StringVar(&f.q, "q", "", "search `phrase`, e.g. 'action:workflow.job.* actor:alice success:false'")
}

// fill copies the filters into a request message (fields 1 to 15 share
// their names in every request).
func (f *filterFlags) fill(m proto.Message) error {
	r := m.ProtoReflect()
	fields := r.Descriptor().Fields()
	setList := func(name string, vs []string) {
		l := r.Mutable(fields.ByName(protoreflect.Name(name))).List()
		for _, v := range vs {
			l.Append(protoreflect.ValueOfString(v))
		}
	}
	setList("scope_id", f.scopeID)
	setList("action", f.action)
	setList("actor_id", f.actorID)
	setList("actor_type", f.actorType)
	setList("actor_name", f.actorName)
	setList("target_id", f.targetID)
	setList("target_type", f.targetType)
	setList("target_name", f.targetName)
	setList("request_id", f.requestID)
	setList("metadata", f.meta)
	if len(f.version) > 0 {
		l := r.Mutable(fields.ByName("version")).List()
		for _, v := range f.version {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return cli.UsageError("--version %q: want an integer", v)
			}
			l.Append(protoreflect.ValueOfUint32(uint32(n)))
		}
	}
	if f.success != "" {
		b, err := strconv.ParseBool(f.success)
		if err != nil {
			return cli.UsageError("--success %q: want true or false", f.success)
		}
		r.Set(fields.ByName("success"), protoreflect.ValueOfBool(b))
	}
	for name, v := range map[string]string{"since": f.since, "until": f.until, "q": f.q} {
		if v != "" {
			r.Set(fields.ByName(protoreflect.Name(name)), protoreflect.ValueOfString(v))
		}
	}
	return nil
}

func queryCommand() cli.Command {
	return cli.Command{Name: "query", Summary: "list events matching filters (table or JSON)", Run: runQuery}
}

func runQuery(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("query", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	var ff filterFlags
	ff.register(fs)
	output := fs.String("output", "table", "`format`: table, or json (one event per line)")
	all := fs.Bool("all", false, "follow next_page_token until the last page")
	pageSize := fs.Int("page-size", 100, "events per page (at most 1000)")
	order := fs.String("order", "desc", "desc (newest first) or asc")
	pageToken := fs.String("page-token", "", "start at this page (next_page_token of an earlier call)")
	fs.Usage = config.Usage(fs, "auditctl query [flags]",
		"Lists the events matching the filters through ListEvents. Without --all it prints one page and, on stderr, the token of the next.")
	if err := config.Parse(fs, args); err != nil {
		return err
	}
	if *output != "table" && *output != "json" {
		return cli.UsageError("--output %q: want table or json", *output)
	}
	req := &auditv1.ListEventsRequest{PageSize: int32(*pageSize), Order: *order, PageToken: *pageToken}
	if err := ff.fill(req); err != nil {
		return err
	}
	client, closeConn, err := cf.dial()
	if err != nil {
		return err
	}
	defer closeConn()
	var tw *tabwriter.Writer
	if *output == "table" {
		tw = tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "OCCURRED_AT\tACTION\tSUCCESS\tACTOR\tTARGET\tSCOPE\tID")
		defer tw.Flush()
	}
	for {
		resp, err := client.ListEvents(ctx, req)
		if err != nil {
			return err
		}
		for _, e := range resp.GetEvents() {
			if tw != nil {
				printRow(tw, e)
			} else if err := printJSON(os.Stdout, e); err != nil {
				return err
			}
		}
		if resp.GetNextPageToken() == "" {
			return nil
		}
		if !*all {
			if tw != nil {
				tw.Flush()
			}
			fmt.Fprintf(os.Stderr, "next page: --page-token %s\n", resp.GetNextPageToken())
			return nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

func printRow(w io.Writer, e *auditv1.AuditEvent) {
	name := func(ent *auditv1.Entity) string {
		if ent == nil {
			return "-"
		}
		if ent.GetName() != "" {
			return ent.GetType() + ":" + ent.GetName()
		}
		return ent.GetType() + ":" + ent.GetId()
	}
	fmt.Fprintf(w, "%s\t%s\t%t\t%s\t%s\t%s\t%s\n", e.GetOccurredAt().AsTime().UTC().Format(event.TimeLayout),
		e.GetAction(), e.GetSuccess(), name(e.GetActor()), name(e.GetTarget()), name(e.GetScope()), e.GetId())
}

// printJSON writes the event as the contract's JSON object, on one line.
func printJSON(w io.Writer, e *auditv1.AuditEvent) error {
	ev, err := event.FromProtoUnchecked(e)
	if err != nil {
		return err
	}
	_, err = w.Write(append(ev.AppendJSON(nil), '\n'))
	return err
}
