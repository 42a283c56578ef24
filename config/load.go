package config

import (
	"fmt"
	"reflect"
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
	}
	err := v.Unmarshal(dst, viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
		mapstructure.StringToTimeDurationHookFunc(),
		mapstructure.StringToSliceHookFunc(","),
		trimSliceHook,
	)))
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
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
