package schemas

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/auditlog/auditlog/internal/event"
)

//go:embed v*/*.json
var embedded embed.FS

// ErrUnknownSchema is matched (errors.Is) by the error Validate returns when
// no schema is registered for the event's (action, version).
var ErrUnknownSchema = errors.New("no schema for this action and version")

// Schema is one registered schema.
type Schema struct {
	Action  string
	Version uint32
	// JSON is the schema document, compact.
	JSON json.RawMessage
}

// Registry is a set of compiled schemas keyed by (action, version). It is
// immutable once built and safe for concurrent use.
type Registry struct {
	byKey map[key]*entry
	list  []Schema // sorted by action, version
}

type key struct {
	action  string
	version uint32
}

type entry struct {
	schema   Schema
	compiled *jsonschema.Schema
	examples []json.RawMessage
}

var embeddedRegistry = sync.OnceValue(func() *Registry {
	files, err := readTree(embedded, "embedded")
	if err != nil {
		panic(err) // the embedded files are checked by the package tests
	}
	r, err := compile(files)
	if err != nil {
		panic(err)
	}
	return r
})

// Embedded returns the registry of the schemas built into the binary. It is
// compiled once, on first use, and shared.
func Embedded() *Registry { return embeddedRegistry() }

// Load returns the embedded schemas overridden and extended by the schema
// files under dir (see the package documentation for the layout). Errors
// name the file at fault.
func Load(dir string) (*Registry, error) {
	files, err := readTree(embedded, "embedded")
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("schemas: %w", err)
	}
	extra, err := readTree(os.DirFS(dir), dir)
	if err != nil {
		return nil, err
	}
	for k, f := range extra {
		files[k] = f // an override replaces the built-in file of the same (action, version)
	}
	return compile(files)
}

// schemaFile is one schema file read from a tree, before compiling.
type schemaFile struct {
	key
	name string // what errors call it: the path on disk, or "embedded/v1/x.json"
	doc  []byte
}

var fileRe = regexp.MustCompile(`^v([1-9][0-9]{0,9})/([^/]+)\.json$`)

// readTree reads every .json file of fsys; origin prefixes names in errors.
func readTree(fsys fs.FS, origin string) (map[key]schemaFile, error) {
	files := map[key]schemaFile{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		name := filepath.Join(origin, filepath.FromSlash(p))
		if err != nil {
			return fmt.Errorf("schemas: %s: %w", name, err)
		}
		if d.IsDir() || !strings.HasSuffix(p, ".json") {
			return nil
		}
		k, err := parseName(p)
		if err != nil {
			return fmt.Errorf("schemas: %s: %w", name, err)
		}
		doc, err := fs.ReadFile(fsys, p)
		if err != nil {
			return fmt.Errorf("schemas: %s: %w", name, err)
		}
		files[k] = schemaFile{key: k, name: name, doc: doc}
		return nil
	})
	return files, err
}

// parseName maps a path relative to the tree root to (action, version).
func parseName(p string) (key, error) {
	m := fileRe.FindStringSubmatch(p)
	if m == nil {
		return key{}, errors.New("want a path of the form v<VERSION>/<ACTION>.json, e.g. v1/workflow.job.start.json")
	}
	v, err := strconv.ParseUint(m[1], 10, 32)
	if err != nil {
		return key{}, fmt.Errorf("version %s: want an integer from 1 to %d", m[1], uint32(1<<32-1))
	}
	if err := event.ValidateAction(m[2]); err != nil {
		return key{}, fmt.Errorf("file name: %w", err)
	}
	return key{action: m[2], version: uint32(v)}, nil
}

// compile compiles every file with one compiler, so a schema may $ref
// another by its relative path (e.g. "../v1/user.create.json"). Nothing is
// loaded from outside the set: no network, no disk.
func compile(files map[key]schemaFile) (*Registry, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.RegisterFormat(uuidFormat)
	c.UseLoader(jsonschema.SchemeURLLoader{})

	keys := make([]key, 0, len(files))
	for k := range files {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].action != keys[j].action {
			return keys[i].action < keys[j].action
		}
		return keys[i].version < keys[j].version
	})

	r := &Registry{byKey: make(map[key]*entry, len(files))}
	for _, k := range keys {
		f := files[k]
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(f.doc))
		if err != nil {
			return nil, fmt.Errorf("schemas: %s: not valid JSON: %w", f.name, err)
		}
		if err := c.AddResource(resourceURL(k), doc); err != nil {
			return nil, fmt.Errorf("schemas: %s: %w", f.name, err)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, f.doc); err != nil {
			return nil, fmt.Errorf("schemas: %s: not valid JSON: %w", f.name, err)
		}
		var annotations struct {
			Examples []json.RawMessage `json:"examples"`
		}
		// A schema may be a boolean, which has no examples.
		_ = json.Unmarshal(compact.Bytes(), &annotations)
		r.byKey[k] = &entry{
			schema:   Schema{Action: k.action, Version: k.version, JSON: compact.Bytes()},
			examples: annotations.Examples,
		}
	}
	for _, k := range keys {
		e := r.byKey[k]
		compiled, err := c.Compile(resourceURL(k))
		if err != nil {
			return nil, fmt.Errorf("schemas: %s: %s", files[k].name, oneLine(err.Error()))
		}
		e.compiled = compiled
		r.list = append(r.list, e.schema)
	}
	return r, nil
}

// resourceURL is the URL a schema is known by inside the compiler. The
// scheme is one no loader serves, so a $ref outside the set fails to compile
// instead of fetching anything.
func resourceURL(k key) string {
	return fmt.Sprintf("auditlog:///v%d/%s.json", k.version, k.action)
}

// List returns every schema, sorted by action, then version.
func (r *Registry) List() []Schema {
	out := make([]Schema, len(r.list))
	copy(out, r.list)
	return out
}

// Lookup returns the schema of (action, version).
func (r *Registry) Lookup(action string, version uint32) (Schema, bool) {
	e, ok := r.byKey[key{action, version}]
	if !ok {
		return Schema{}, false
	}
	return e.schema, true
}

// Validate checks a payload against the schema of (action, version). It
// returns nil when the payload is valid; an error matching ErrUnknownSchema
// when there is no such schema; otherwise an *event.FieldError naming the
// payload member at fault. An empty payload is the empty object. payload
// must not change during the call (nothing of it is kept after).
func (r *Registry) Validate(action string, version uint32, payload json.RawMessage) error {
	e, ok := r.byKey[key{action, version}]
	if !ok {
		return fmt.Errorf("%w: %s version %d", ErrUnknownSchema, action, version)
	}
	if len(payload) == 0 {
		payload = json.RawMessage("{}")
	}
	// json.Number keeps integers beyond 2^53 exact; the validator compares
	// them as big numbers. The payload decoder is the fast way to the same
	// values; its tree is released once the error, if any, is rendered.
	d := newPayloadDecoder()
	defer d.release()
	doc, ok := d.decode(payload)
	if !ok {
		dec := json.NewDecoder(bytes.NewReader(payload))
		dec.UseNumber()
		if err := dec.Decode(&doc); err != nil {
			return &event.FieldError{Field: "payload", Problem: "malformed JSON: " + err.Error()}
		}
	}
	err := e.compiled.Validate(doc)
	if err == nil {
		return nil
	}
	var verr *jsonschema.ValidationError
	if !errors.As(err, &verr) {
		return &event.FieldError{Field: "payload", Problem: oneLine(err.Error())}
	}
	return fieldError(verr, doc)
}

var printer = message.NewPrinter(language.English)

// fieldError reduces a validation error tree to one line about one member:
// the first leaf in the order of instance locations, so the message does not
// depend on the validator's map iteration order.
func fieldError(verr *jsonschema.ValidationError, doc any) *event.FieldError {
	var leaves []*jsonschema.ValidationError
	var walk func(*jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			leaves = append(leaves, e)
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(verr)
	sort.SliceStable(leaves, func(i, j int) bool {
		return strings.Join(leaves[i].InstanceLocation, "\x00") < strings.Join(leaves[j].InstanceLocation, "\x00")
	})
	leaf := leaves[0]
	field := fieldPath(leaf.InstanceLocation, doc)
	switch k := leaf.ErrorKind.(type) {
	case *kind.Type:
		return &event.FieldError{Field: field, Problem: fmt.Sprintf("expected %s, got %s", strings.Join(k.Want, " or "), k.Got)}
	case *kind.Required:
		missing := append([]string(nil), k.Missing...)
		sort.Strings(missing)
		return &event.FieldError{Field: field + "." + missing[0], Problem: "is required"}
	case *kind.AdditionalProperties:
		props := append([]string(nil), k.Properties...)
		sort.Strings(props)
		return &event.FieldError{Field: field + "." + props[0], Problem: "unknown field"}
	case *kind.FalseSchema:
		return &event.FieldError{Field: field, Problem: "must not be sent (the schema forbids this field)"}
	// The library renders bounds through float64, which prints 2^63 and
	// 2^63-1 alike; print them exactly.
	case *kind.Minimum:
		return &event.FieldError{Field: field, Problem: fmt.Sprintf("must be >= %s, got %s", ratString(k.Want), ratString(k.Got))}
	case *kind.Maximum:
		return &event.FieldError{Field: field, Problem: fmt.Sprintf("must be <= %s, got %s", ratString(k.Want), ratString(k.Got))}
	case *kind.ExclusiveMinimum:
		return &event.FieldError{Field: field, Problem: fmt.Sprintf("must be > %s, got %s", ratString(k.Want), ratString(k.Got))}
	case *kind.ExclusiveMaximum:
		return &event.FieldError{Field: field, Problem: fmt.Sprintf("must be < %s, got %s", ratString(k.Want), ratString(k.Got))}
	case *kind.MultipleOf:
		return &event.FieldError{Field: field, Problem: fmt.Sprintf("must be a multiple of %s, got %s", ratString(k.Want), ratString(k.Got))}
	case *kind.MinLength:
		return &event.FieldError{Field: field, Problem: fmt.Sprintf("must be at least %d characters, got %d", k.Want, k.Got)}
	case *kind.MaxLength:
		return &event.FieldError{Field: field, Problem: fmt.Sprintf("must be at most %d characters, got %d", k.Want, k.Got)}
	case *kind.MinItems:
		return &event.FieldError{Field: field, Problem: fmt.Sprintf("must have at least %d items, got %d", k.Want, k.Got)}
	case *kind.MaxItems:
		return &event.FieldError{Field: field, Problem: fmt.Sprintf("must have at most %d items, got %d", k.Want, k.Got)}
	default:
		return &event.FieldError{Field: field, Problem: oneLine(leaf.ErrorKind.LocalizedString(printer))}
	}
}

// fieldPath renders an instance location under "payload": members as .name,
// array elements as [i].
func fieldPath(loc []string, doc any) string {
	var b strings.Builder
	b.WriteString("payload")
	cur := doc
	for _, tok := range loc {
		switch v := cur.(type) {
		case []any:
			b.WriteString("[" + tok + "]")
			if i, err := strconv.Atoi(tok); err == nil && i >= 0 && i < len(v) {
				cur = v[i]
			} else {
				cur = nil
			}
		case map[string]any:
			b.WriteString("." + tok)
			cur = v[tok]
		default:
			b.WriteString("." + tok)
			cur = nil
		}
	}
	return b.String()
}

func ratString(r *big.Rat) string {
	if r.IsInt() {
		return r.Num().String()
	}
	return strings.TrimRight(r.FloatString(20), "0")
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// Samples returns the first example payload of every embedded schema that has
// one, sorted by action, then version.
func Samples() []Sample {
	r := Embedded()
	var out []Sample
	for _, s := range r.list {
		e := r.byKey[key{s.Action, s.Version}]
		if len(e.examples) > 0 {
			out = append(out, Sample{Action: s.Action, Version: s.Version, Payload: clone(e.examples[0])})
		}
	}
	return out
}

// Sample is an example payload of one schema.
type Sample struct {
	Action  string
	Version uint32
	Payload json.RawMessage
}

// SamplePayload returns the first example payload of the newest embedded
// version of action that has one, or nil when there is none.
func SamplePayload(action string) json.RawMessage {
	var best *Sample
	for _, s := range Samples() {
		if s.Action == action && (best == nil || s.Version > best.Version) {
			best = &s
		}
	}
	if best == nil {
		return nil
	}
	return best.Payload
}

func clone(raw json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return append(json.RawMessage(nil), raw...)
	}
	return b.Bytes()
}
