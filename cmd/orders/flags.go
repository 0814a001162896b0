package main

// Every setting is a typed pflag flag. A flag that has an environment
// variable carries the variable's name in an annotation, and applyEnv, run
// once before a command, sets each flag the command line left alone from
// its variable through the flag's own Value: a variable is parsed exactly as
// its flag is, and the flag wins over the variable, which wins over the
// default.

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	"go.uber.org/zap/zapcore"
)

// envAnnotation is the key of the flag annotation that names a flag's
// environment variable.
const envAnnotation = "orders/env"

// bindEnv names the environment variable of each flag in vars (flag name
// to variable) and shows the variable in the flag's help. A name fs does
// not define is a wiring mistake, caught by any run of the binary.
func bindEnv(fs *pflag.FlagSet, vars map[string]string) {
	for name, env := range vars {
		f := fs.Lookup(name)
		if f == nil {
			panic("bindEnv: no flag --" + name)
		}
		f.Usage += " [$" + env + "]"
		if err := fs.SetAnnotation(name, envAnnotation, []string{env}); err != nil {
			panic(err)
		}
	}
}

// trimLists lets each list flag of fs take spaces around its commas.
func trimLists(fs *pflag.FlagSet) {
	fs.VisitAll(func(f *pflag.Flag) {
		if v, ok := f.Value.(sliceValue); ok {
			f.Value = list{v}
		}
	})
}

// envOf is the environment variable of f, or "" if it has none.
func envOf(f *pflag.Flag) string {
	if v := f.Annotations[envAnnotation]; len(v) == 1 {
		return v[0]
	}
	return ""
}

// applyEnv sets each flag of fs that has an environment variable, was not
// given on the command line, and whose variable is set, from the variable.
// Each error names the variable, its value and the flag. It leaves
// Flag.Changed alone: Changed still means "given on the command line".
func applyEnv(fs *pflag.FlagSet) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		env := envOf(f)
		if env == "" || f.Changed {
			return
		}
		v, ok := os.LookupEnv(env)
		if !ok {
			return
		}
		if err := f.Value.Set(v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%s (--%s): %w", env, v, f.Name, err))
		}
	})
	return errors.Join(errs...)
}

// fromEnv reports whether f took its value from its environment variable.
func fromEnv(f *pflag.Flag) bool {
	if f.Changed || envOf(f) == "" {
		return false
	}
	_, ok := os.LookupEnv(envOf(f))
	return ok
}

// sliceValue is what pflag's list flags (StringSliceVar, DurationSliceVar)
// implement.
type sliceValue interface {
	pflag.Value
	pflag.SliceValue
}

// list is a comma-separated list flag that takes spaces around its commas,
// as in "1s, 5s"; the wrapped value parses the items.
type list struct{ sliceValue }

func (l list) Set(s string) error {
	items := strings.Split(s, ",")
	for i := range items {
		items[i] = strings.TrimSpace(items[i])
	}
	s = strings.Join(items, ",")
	// A string list is read as CSV, which would keep only the first line.
	if strings.ContainsAny(s, "\r\n") {
		return errors.New("must be on one line")
	}
	return l.sliceValue.Set(s)
}

// Type names the list in help as "durations" or "strings".
func (l list) Type() string {
	return strings.TrimSuffix(l.sliceValue.Type(), "Slice") + "s"
}

// onOff is a switch written on or off. It also takes true, yes and 1, and
// false, no, 0 and the empty string, in any case and with spaces around.
// Unlike a bool flag it needs its value (--tls on), so that "--tls on"
// never leaves "on" behind as an argument.
type onOff struct{ p *bool }

func onOffVar(fs *pflag.FlagSet, p *bool, name string, value bool, usage string) {
	*p = value
	fs.Var(onOff{p}, name, usage)
}

func (v onOff) Set(s string) error {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "on", "true", "1", "yes":
		*v.p = true
	case "off", "false", "0", "no", "":
		*v.p = false
	default:
		return errors.New("must be on or off")
	}
	return nil
}

func (v onOff) String() string {
	if v.p != nil && *v.p {
		return "on"
	}
	return "off"
}

func (onOff) Type() string { return "on|off" }

// choice is a string that must be one of a few words.
type choice struct {
	p     *string
	words []string
	// fold takes the words in any case and keeps them in lower case.
	fold bool
	// none takes the empty string too, for "not set".
	none bool
}

func choiceVar(fs *pflag.FlagSet, c choice, name, value, usage string) {
	*c.p = value
	fs.Var(c, name, usage)
}

func (c choice) Set(s string) error {
	if c.fold {
		s = strings.ToLower(s)
	}
	if s == "" && c.none {
		*c.p = s
		return nil
	}
	for _, w := range c.words {
		if s == w {
			*c.p = s
			return nil
		}
	}
	return errors.New("must be " + orList(c.words))
}

func (c choice) String() string {
	if c.p == nil {
		return ""
	}
	return *c.p
}

func (c choice) Type() string { return strings.Join(c.words, "|") }

// orList writes words as "a, b or c".
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// level is a log level flag. zapcore.Level parses and prints itself; level
// adds the Type pflag wants and an error that lists the levels.
type level struct{ *zapcore.Level }

func (l level) Set(s string) error {
	if err := l.Level.Set(s); err != nil {
		return errors.New("must be debug, info, warn or error")
	}
	return nil
}

func (level) Type() string { return "level" }

// decimal is an int written in base 10, as strconv.Atoi reads it: pflag's
// IntVar guesses the base, so it would read 010 as 8 and refuse 08.
type decimal struct{ p *int }

func decimalVar(fs *pflag.FlagSet, p *int, name string, value int, usage string) {
	*p = value
	fs.Var(decimal{p}, name, usage)
}

func (d decimal) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return errors.New("must be a whole number")
	}
	*d.p = n
	return nil
}

func (d decimal) String() string {
	if d.p == nil {
		return "0"
	}
	return strconv.Itoa(*d.p)
}

func (decimal) Type() string { return "int" }
