// Package cli is the small command framework both binaries share: a table of
// subcommands, `help`, and the mapping of errors to exit codes. Each command
// parses its own flags with internal/config so every flag has an AUDITLOG_*
// twin.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// Command is one subcommand.
type Command struct {
	// Name is what the user types.
	Name string
	// Summary is the one-line description in the command list.
	Summary string
	// Run runs the command with the arguments after its name. It returns
	// ErrUsage (possibly wrapped) for bad arguments.
	Run func(ctx context.Context, args []string) error
}

// ErrUsage marks an error caused by bad arguments (exit code 2).
var ErrUsage = errors.New("usage")

// UsageError wraps err so that Main exits with code 2.
func UsageError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
}

// Main runs the command named by os.Args[1] with a context cancelled on
// SIGINT or SIGTERM and exits: 0 on success, 2 on usage errors, 1 otherwise.
func Main(program, description string, commands []Command) {
	os.Exit(run(program, description, commands, os.Args[1:], os.Stderr))
}

func run(program, description string, commands []Command, args []string, stderr io.Writer) int {
	byName := map[string]Command{}
	for _, c := range commands {
		byName[c.Name] = c
	}
	usage := func() {
		fmt.Fprintf(stderr, "%s: %s\n\nusage: %s <command> [flags]\n\ncommands:\n", program, description, program)
		names := make([]string, 0, len(commands))
		for _, c := range commands {
			names = append(names, c.Name)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(stderr, "  %-10s %s\n", n, byName[n].Summary)
		}
		fmt.Fprintf(stderr, "\nRun '%s <command> --help' for the flags of a command.\n", program)
	}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage()
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := byName[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "%s: unknown command %q\n\n", program, args[0])
		usage()
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := cmd.Run(ctx, args[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, ErrUsage):
		fmt.Fprintf(stderr, "%s %s: %v\n", program, cmd.Name, err)
		return 2
	default:
		fmt.Fprintf(stderr, "%s %s: %v\n", program, cmd.Name, err)
		return 1
	}
}
