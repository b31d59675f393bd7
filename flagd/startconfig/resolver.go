package startconfig

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/alecthomas/kong"
	"sigs.k8s.io/yaml"
)

// ConfigResolver resolves flags from the file named by --config, with flagd's
// precedence: a flag on the command line or its FLAGD_* variable wins over the file.
// Values are converted to the command-line syntax (sources: the JSON array; maps:
// key=value pairs; lists: comma-separated).
func ConfigResolver() kong.Resolver {
	var file configFile
	return kong.ResolverFunc(func(kctx *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
		if flag.Name == "config" {
			return nil, nil
		}
		path := configPath(kctx)
		if path == "" {
			return nil, nil
		}
		if err := file.load(path); err != nil {
			return nil, err
		}
		for _, env := range flag.Tag.Envs {
			if _, set := os.LookupEnv(env); set {
				return nil, nil
			}
		}
		v, ok := file.values[flag.Name]
		if !ok {
			return nil, nil
		}
		s, err := configValue(v)
		if err != nil {
			return nil, fmt.Errorf("--config %s: %q: %w", path, flag.Name, err)
		}
		return s, nil
	})
}

// configPath finds the --config value (or FLAGD_CONFIG) of the command being parsed.
func configPath(kctx *kong.Context) string {
	for _, f := range kctx.Flags() {
		if f.Name == "config" {
			if s, ok := kctx.FlagValue(f).(string); ok {
				return s
			}
		}
	}
	return ""
}

// configFile is a --config file, read once.
type configFile struct {
	path   string
	values map[string]any
	err    error
}

// load reads a JSON or YAML config file unless it was already read.
func (f *configFile) load(path string) error {
	if f.path == path {
		return f.err
	}
	f.path, f.values, f.err = path, map[string]any{}, nil
	data, err := os.ReadFile(path)
	if err == nil {
		data, err = yaml.YAMLToJSON(data) // JSON is YAML too
	}
	if err == nil {
		err = json.Unmarshal(data, &f.values)
	}
	if err != nil {
		f.err = fmt.Errorf("--config %s: %w", filepath.Clean(path), err)
	}
	return f.err
}

// configValue renders a config file value in command-line syntax.
func configValue(v any) (string, error) {
	switch t := v.(type) {
	case string:
		return t, nil
	case bool:
		return strconv.FormatBool(t), nil
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64), nil
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		pairs := make([]string, 0, len(t))
		for _, k := range keys {
			s, err := configValue(t[k])
			if err != nil {
				return "", err
			}
			pairs = append(pairs, k+"="+s)
		}
		return strings.Join(pairs, ","), nil
	case []any:
		if len(t) > 0 {
			if _, isObject := t[0].(map[string]any); isObject { // sources
				b, err := json.Marshal(t)
				return string(b), err
			}
		}
		parts := make([]string, len(t))
		for i, e := range t {
			s, err := configValue(e)
			if err != nil {
				return "", err
			}
			parts[i] = s
		}
		return strings.Join(parts, ","), nil
	case nil:
		return "", nil
	}
	return "", fmt.Errorf("unsupported value %v", v)
}
