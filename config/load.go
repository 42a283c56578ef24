package config

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// Load fills dst from flags, SMS_* environment variables and the optional
// config file named by the --config flag or SMS_CONFIG, in that order of
// precedence. A flag named kafka-brokers is read from SMS_KAFKA_BROKERS and
// from the file key kafka-brokers. Values not given keep the flag defaults.
func Load(flags *pflag.FlagSet, dst any) error {
	v := viper.New()
	v.SetEnvPrefix("SMS")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	if err := v.BindPFlags(flags); err != nil {
		return fmt.Errorf("bind flags: %w", err)
	}
	// AutomaticEnv only covers keys viper already knows (flags, file), so
	// bind every key of dst too: a setting without a flag on this command
	// is still read from its SMS_* variable.
	for _, key := range append(keys(reflect.TypeOf(dst).Elem()), "config") {
		if err := v.BindEnv(key); err != nil {
			return fmt.Errorf("bind %s: %w", key, err)
		}
	}
	if file := v.GetString("config"); file != "" {
		v.SetConfigFile(file)
		if err := v.ReadInConfig(); err != nil {
			return fmt.Errorf("config: read %s: %w", file, err)
		}
		if err := checkFileKeys(file); err != nil {
			return err
		}
	}
	err := v.Unmarshal(dst, viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
		mapstructure.StringToTimeDurationHookFunc(),
		mapstructure.StringToSliceHookFunc(","),
		trimSliceHook,
	)))
	if err != nil {
		return fmt.Errorf("config: %w", nameSettings(err))
	}
	return nil
}

// nameSettings rewrites the decoder's errors ("'outbox-interval' time:
// invalid duration") to name the environment variable as well as the key,
// as Validate's errors do.
func nameSettings(err error) error {
	var errs []error
	var walk func(error)
	walk = func(err error) {
		var de *mapstructure.DecodeError
		switch e := err.(type) {
		case *mapstructure.DecodeError:
			key, _, _ := strings.Cut(e.Name(), "[") // kafka-brokers[1]
			errs = append(errs, invalid(key, "cannot be read: %v", e.Unwrap()))
		case interface{ Unwrap() []error }:
			for _, e := range e.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			if errors.As(err, &de) { // "decoding failed due to ...": say it per setting
				walk(e.Unwrap())
				return
			}
			errs = append(errs, err)
		default:
			errs = append(errs, err)
		}
	}
	walk(err)
	return errors.Join(errs...)
}

// trimSliceHook drops blanks around list items ("a:1, b:2") and empty items.
func trimSliceHook(_, to reflect.Type, data any) (any, error) {
	items, ok := data.([]string)
	if !ok || to.String() != "[]string" {
		return data, nil
	}
	out := items[:0:0]
	for _, s := range items {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

// keys lists the mapstructure keys of struct type t, including those of
// squashed embedded structs.
func keys(t reflect.Type) []string {
	var out []string
	for f := range t.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		switch {
		case opts == "squash" && f.Type.Kind() == reflect.Struct:
			out = append(out, keys(f.Type)...)
		case name != "" && name != "-":
			out = append(out, name)
		}
	}
	return out
}

// fileKeys are the keys a config file may hold: those of every command,
// so that one file can serve both roles.
var fileKeys = func() map[string]bool {
	known := map[string]bool{}
	for _, t := range []any{API{}, Processor{}, Client{}, Database{}} {
		for _, k := range keys(reflect.TypeOf(t)) {
			known[k] = true
		}
	}
	return known
}()

// checkFileKeys refuses a config file with a key no command reads: a typo
// would otherwise leave the setting at its default without a word.
func checkFileKeys(file string) error {
	f := viper.New()
	f.SetConfigFile(file)
	if err := f.ReadInConfig(); err != nil {
		return fmt.Errorf("config: read %s: %w", file, err)
	}
	var unknown []string
	for _, k := range f.AllKeys() {
		if !fileKeys[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("config: %s: unknown keys %s (keys are the flag names, e.g. kafka-brokers)", file, strings.Join(unknown, ", "))
	}
	return nil
}
