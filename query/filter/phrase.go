package filter

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// phraseKeys maps the keys of a `q` term to the field they filter. meta.KEY
// is handled apart.
var phraseKeys = map[string]Field{
	"scope_id": ScopeID, "scope": ScopeID,
	"action":   Action,
	"actor_id": ActorID, "actor_type": ActorType, "actor_name": ActorName, "actor": Actor,
	"target_id": TargetID, "target_type": TargetType, "target_name": TargetName, "target": Target,
	"request_id": RequestID, "request": RequestID,
	"success":  Success,
	"version":  Version,
	"metadata": Metadata,
	"occurred": Occurred, "since": Occurred, "until": Occurred,
}

// term is one `key:value,value` of a phrase before interpretation.
type term struct {
	negate bool
	key    string
	values []string
}

// parsePhrase parses a `q` phrase into conditions. Errors say which term is
// at fault, counting from 1.
func parsePhrase(q string) ([]Cond, error) {
	if len(q) > MaxPhraseBytes {
		return nil, fmt.Errorf("phrase of %d bytes, at most %d allowed", len(q), MaxPhraseBytes)
	}
	if !utf8.ValidString(q) {
		return nil, errors.New("phrase is not valid UTF-8")
	}
	terms, err := splitTerms(q)
	if err != nil {
		return nil, err
	}
	conds := make([]Cond, 0, len(terms))
	for i, t := range terms {
		c, err := t.cond()
		if err != nil {
			return nil, fmt.Errorf("%s in term %d", err, i+1)
		}
		conds = append(conds, c)
	}
	return conds, nil
}

// splitTerms tokenizes a phrase: terms separated by white space, each
// `[-]key:value[,value…]` where a value is bare (no white space, comma or
// quote) or double-quoted with \" and \\ escapes, or a whole term
// `[-]"key:value"` quoted, whose value is taken literally.
func splitTerms(q string) ([]term, error) {
	var terms []term
	s := scanner{src: q}
	for {
		s.skipSpace()
		if s.done() {
			break
		}
		n := len(terms) + 1
		if n > MaxTerms {
			return nil, fmt.Errorf("more than %d terms", MaxTerms)
		}
		var t term
		if s.peek() == '-' {
			t.negate = true
			s.pos++
		}
		if s.peek() == '"' {
			whole, err := s.quoted()
			if err != nil {
				return nil, fmt.Errorf("%s in term %d", err, n)
			}
			k, v, ok := strings.Cut(whole, ":")
			if !ok {
				return nil, fmt.Errorf("want key:value, got %q in term %d", clip(whole), n)
			}
			t.key, t.values = k, []string{v}
		} else {
			start := s.pos
			for !s.done() && s.peek() != ':' && !isSpace(s.peek()) && s.peek() != '"' {
				s.pos++
			}
			if s.done() || s.peek() != ':' {
				for !s.done() && !isSpace(s.peek()) {
					s.pos++
				}
				return nil, fmt.Errorf("want key:value, got %q in term %d", clip(q[start:s.pos]), n)
			}
			t.key = q[start:s.pos]
			s.pos++ // ':'
			for {
				var v string
				if s.peek() == '"' {
					var err error
					if v, err = s.quoted(); err != nil {
						return nil, fmt.Errorf("%s in term %d", err, n)
					}
				} else {
					vs := s.pos
					for !s.done() && !isSpace(s.peek()) && s.peek() != ',' && s.peek() != '"' {
						s.pos++
					}
					v = q[vs:s.pos]
					if v == "" {
						return nil, fmt.Errorf("empty value for %q in term %d", clip(t.key), n)
					}
				}
				t.values = append(t.values, v)
				if len(t.values) > MaxValues {
					return nil, fmt.Errorf("more than %d values in term %d", MaxValues, n)
				}
				if s.peek() != ',' {
					break
				}
				s.pos++
			}
		}
		if !s.done() && !isSpace(s.peek()) {
			return nil, fmt.Errorf("unexpected %q after the value in term %d (quote values that hold quotes)", s.peek(), n)
		}
		terms = append(terms, t)
	}
	return terms, nil
}

type scanner struct {
	src string
	pos int
}

func (s *scanner) done() bool { return s.pos >= len(s.src) }

func (s *scanner) peek() byte {
	if s.done() {
		return 0
	}
	return s.src[s.pos]
}

func (s *scanner) skipSpace() {
	for !s.done() && isSpace(s.peek()) {
		s.pos++
	}
}

// quoted reads a double-quoted string at pos, with \" and \\ escapes.
func (s *scanner) quoted() (string, error) {
	s.pos++ // opening quote
	var b strings.Builder
	for !s.done() {
		c := s.src[s.pos]
		s.pos++
		switch c {
		case '"':
			return b.String(), nil
		case '\\':
			if s.done() {
				return "", errors.New("unterminated quote")
			}
			b.WriteByte(s.src[s.pos])
			s.pos++
		default:
			b.WriteByte(c)
		}
	}
	return "", errors.New("unterminated quote")
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// cond interprets a term.
func (t term) cond() (Cond, error) {
	key := t.key
	field, ok := phraseKeys[key]
	var metaKey string
	if !ok {
		if k, isMeta := strings.CutPrefix(key, "meta."); isMeta && k != "" {
			field, metaKey = Metadata, k
		} else {
			return Cond{}, fmt.Errorf("unknown key %q", clip(key))
		}
	}
	c := Cond{Field: field, Negate: t.negate}
	for _, v := range t.values {
		if err := checkValue(v); err != nil {
			return Cond{}, fmt.Errorf("%s: %s", key, err)
		}
	}
	switch field {
	case Success:
		for _, v := range t.values {
			switch strings.ToLower(v) {
			case "true":
				c.Bools = append(c.Bools, true)
			case "false":
				c.Bools = append(c.Bools, false)
			default:
				return Cond{}, fmt.Errorf("success: %q is not true or false", clip(v))
			}
		}
	case Version:
		for _, v := range t.values {
			n, err := parseVersion(v)
			if err != nil {
				return Cond{}, fmt.Errorf("version: %s", err)
			}
			c.Versions = append(c.Versions, n)
		}
	case Metadata:
		for _, v := range t.values {
			if metaKey != "" {
				c.Pairs = append(c.Pairs, Pair{Key: metaKey, Value: v})
				continue
			}
			p, err := parsePair(v)
			if err != nil {
				return Cond{}, fmt.Errorf("metadata: %s", err)
			}
			c.Pairs = append(c.Pairs, p)
		}
	case Occurred:
		for _, v := range t.values {
			r, err := parseRange(key, v)
			if err != nil {
				return Cond{}, fmt.Errorf("%s: %s", key, err)
			}
			c.Ranges = append(c.Ranges, r)
		}
	case Action:
		sc, err := stringCond(Action, t.values)
		if err != nil {
			return Cond{}, fmt.Errorf("action: %s", err)
		}
		c.Values = sc.Values
	default:
		c.Values = t.values
	}
	return c, nil
}

// parseRange reads the value of an occurred (or since/until) term.
func parseRange(key, v string) (Range, error) {
	open := Range{From: math.MinInt64, To: math.MaxInt64}
	switch key {
	case "since":
		t, err := parseTime(v)
		if err != nil {
			return Range{}, err
		}
		open.From = t.UnixNano()
		return open, nil
	case "until":
		t, err := parseTime(v)
		if err != nil {
			return Range{}, err
		}
		open.To = t.UnixNano()
		return open, nil
	}
	if a, b, ok := strings.Cut(v, ".."); ok {
		from, err := parseTime(a)
		if err != nil {
			return Range{}, err
		}
		to, err := parseTime(b)
		if err != nil {
			return Range{}, err
		}
		if !to.After(from) {
			return Range{}, fmt.Errorf("range %q is empty (want A..B with B after A)", clip(v))
		}
		return Range{From: from.UnixNano(), To: to.UnixNano()}, nil
	}
	for _, op := range []string{">=", "<=", ">", "<", "="} {
		rest, ok := strings.CutPrefix(v, op)
		if !ok {
			continue
		}
		t, err := parseTime(rest)
		if err != nil {
			return Range{}, err
		}
		ns := t.UnixNano()
		switch op {
		case ">=":
			open.From = ns
		case ">":
			open.From = ns + 1
		case "<=":
			open.To = ns + 1
		case "<":
			open.To = ns
		case "=":
			return Range{From: ns, To: ns + 1}, nil
		}
		return open, nil
	}
	t, err := parseTime(v)
	if err != nil {
		return Range{}, err
	}
	if len(v) == len("2006-01-02") {
		// A date is the whole UTC day.
		return Range{From: t.UnixNano(), To: t.Add(24 * time.Hour).UnixNano()}, nil
	}
	return Range{From: t.UnixNano(), To: t.UnixNano() + 1}, nil
}
