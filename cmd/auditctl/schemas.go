package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/auditlog/auditlog/internal/cli"
	"github.com/auditlog/auditlog/internal/config"
	auditv1 "github.com/auditlog/auditlog/proto/audit/v1"
)

func schemasCommand() cli.Command {
	return cli.Command{Name: "schemas", Summary: "list the known event actions and versions with their JSON Schemas", Run: runSchemas}
}

func runSchemas(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("schemas", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	action := fs.String("action", "", "only this `action`")
	full := fs.Bool("full", false, "print each JSON Schema too (one JSON object per line)")
	fs.Usage = config.Usage(fs, "auditctl schemas [flags]", "Lists the (action, version) pairs the service knows, through ListSchemas.")
	if err := config.Parse(fs, args); err != nil {
		return err
	}
	client, closeConn, err := cf.dial()
	if err != nil {
		return err
	}
	defer closeConn()
	resp, err := client.ListSchemas(ctx, &auditv1.ListSchemasRequest{Action: *action})
	if err != nil {
		return err
	}
	for _, s := range resp.GetSchemas() {
		if !*full {
			fmt.Printf("%s\tv%d\n", s.GetAction(), s.GetVersion())
			continue
		}
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(s)
		if err != nil {
			return err
		}
		fmt.Fprintln(os.Stdout, string(b))
	}
	return nil
}
