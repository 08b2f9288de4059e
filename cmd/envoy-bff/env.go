package main

import (
	"encoding"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// envPrefix starts every environment variable that overrides a config field.
const envPrefix = "ENVOY_BFF_"

var (
	durationType        = reflect.TypeFor[time.Duration]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// envField is one overridable leaf of the config: its YAML path and its
// environment variable.
type envField struct {
	path string // e.g. session.redis.url
	env  string // e.g. ENVOY_BFF_SESSION_REDIS_URL
	val  reflect.Value
}

// envFields lists every leaf field of cfg (a pointer to a struct) with the
// variable that overrides it: ENVOY_BFF_ + the YAML path, upper-cased, with
// dots as underscores.
func envFields(cfg any, prefix string) []envField {
	var out []envField
	walkFields(reflect.ValueOf(cfg).Elem(), "", prefix, &out)
	return out
}

// nodesType is the raw `frontends:` list, which has variables per frontend
// (ENVOY_BFF_FRONTENDS_<NAME>_…) instead of one of its own.
var nodesType = reflect.TypeFor[[]yaml.Node]()

func walkFields(v reflect.Value, path, prefix string, out *[]envField) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		p := tag
		if path != "" {
			p = path + "." + tag
		}
		fv := v.Field(i)
		if fv.Type() == nodesType {
			continue
		}
		if fv.Kind() == reflect.Struct && fv.Type() != durationType && !reflect.PointerTo(fv.Type()).Implements(textUnmarshalerType) {
			walkFields(fv, p, prefix, out)
			continue
		}
		*out = append(*out, envField{
			path: p,
			env:  prefix + strings.ToUpper(strings.ReplaceAll(p, ".", "_")),
			val:  fv,
		})
	}
}

// applyEnv overrides cfg's fields from the environment. lookup is os.LookupEnv
// in production. Every bad value is reported, naming its variable and field.
func applyEnv(cfg any, prefix string, lookup func(string) (string, bool)) []error {
	var errs []error
	for _, f := range envFields(cfg, prefix) {
		raw, ok := lookup(f.env)
		if !ok {
			continue
		}
		if err := setFromString(f.val, raw); err != nil {
			errs = append(errs, fmt.Errorf("%s (from %s): %w", f.path, f.env, err))
		}
	}
	return errs
}

// setFromString parses raw into v by v's type. Lists and maps accept YAML
// flow syntax (`[a, b]`, `{k: v}`); a list of strings also accepts "a,b".
func setFromString(v reflect.Value, raw string) error {
	if v.CanAddr() && v.Addr().Type().Implements(textUnmarshalerType) {
		return v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(raw))
	}
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("not a duration such as 30s or 5m: %q", raw)
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("not a boolean: %q", raw)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return fmt.Errorf("not an integer: %q", raw)
		}
		v.SetInt(n)
	case reflect.Float64:
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return fmt.Errorf("not a number: %q", raw)
		}
		v.SetFloat(f)
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.String && !strings.HasPrefix(strings.TrimSpace(raw), "[") {
			parts := []string{}
			for p := range strings.SplitSeq(raw, ",") {
				if p = strings.TrimSpace(p); p != "" {
					parts = append(parts, p)
				}
			}
			v.Set(reflect.ValueOf(parts).Convert(v.Type()))
			return nil
		}
		return decodeYAMLInto(v, raw)
	case reflect.Map, reflect.Struct:
		return decodeYAMLInto(v, raw)
	default:
		return fmt.Errorf("cannot be set from the environment")
	}
	return nil
}

func decodeYAMLInto(v reflect.Value, raw string) error {
	p := reflect.New(v.Type())
	dec := yaml.NewDecoder(strings.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(p.Interface()); err != nil {
		return fmt.Errorf("not valid YAML for this field: %w", err)
	}
	v.Set(p.Elem())
	return nil
}
