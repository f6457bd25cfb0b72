package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/muster-iot/muster/internal/client/hubservice"
	"github.com/muster-iot/muster/internal/deploy"
)

func (c *cli) deploymentCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "deployment",
		Aliases: []string{"deployments", "configuration", "configurations"},
		Short:   "Manage automatic edge deployments and device configurations",
		Long: `Manage the hub's automatic configurations through its service API, with a hub
connection string (--hub-connection-string, ` + envHubConnectionString + `, or
endpoints.json's hubConnectionString): IoT Edge deployments (modulesContent,
base or layered) and device configurations (deviceContent, moduleContent).
The hub applies them to every twin their target condition matches, by
priority, and keeps their metrics (targeted, applied, reported) current.
"muster configuration" is the same command.`,
	}
	h := addHubFlag(cmd)
	cmd.AddCommand(c.deploymentCreateCmd(h), c.deploymentListCmd(h), c.deploymentShowCmd(h), c.deploymentDeleteCmd(h))
	return cmd
}

// deploymentSpec holds the flags of deployment create.
type deploymentSpec struct {
	contentFile     string
	targetCondition string
	priority        int
	labels          []string
	metrics         []string
	layered         bool
}

// readManifest reads a deployment manifest: Azure's {"modulesContent":…}
// (or deviceContent/moduleContent), {"content":{…}}, or a whole
// configuration JSON, whose target condition, priority, labels and metrics
// are then defaults for the flags.
func readManifest(path string) (*deploy.Configuration, error) {
	data, err := readFlagFile("--content", path)
	if err != nil {
		return nil, err
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(data, &keys); err != nil || keys == nil {
		return nil, fmt.Errorf("--content %s: not a JSON object: %v", path, jsonProblem(data, err))
	}
	var c deploy.Configuration
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, wrapped := keys["content"]; wrapped {
		if err := dec.Decode(&c); err != nil {
			return nil, fmt.Errorf("--content %s: not a configuration: %w", path, err)
		}
		return &c, nil
	}
	for _, k := range []string{"modulesContent", "moduleContent", "deviceContent"} {
		if _, ok := keys[k]; ok {
			if err := dec.Decode(&c.Content); err != nil {
				return nil, fmt.Errorf("--content %s: %s: %w", path, k, err)
			}
			return &c, nil
		}
	}
	return nil, fmt.Errorf(`--content %s: has none of "modulesContent", "deviceContent", "moduleContent" or "content"; it must be a deployment manifest ({"modulesContent": {…}}) or a configuration`, path)
}

// jsonProblem describes why data is not a JSON object.
func jsonProblem(data []byte, err error) string {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at offset %d: %v", se.Offset, err)
	case err != nil:
		return err.Error()
	}
	return fmt.Sprintf("it is %.16q…", strings.TrimSpace(string(data)))
}

// keyValues parses repeated name=value flags.
func keyValues(flag string, values []string) (map[string]string, error) {
	if len(values) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(values))
	for _, v := range values {
		k, val, ok := strings.Cut(v, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("%s %q: must be name=value", flag, v)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("%s: %q is given twice", flag, k)
		}
		out[k] = val
	}
	return out, nil
}

// build makes the configuration to create: the manifest's, with the flags
// given overriding it.
func (s *deploymentSpec) build(cmd *cobra.Command, id string) (*deploy.Configuration, error) {
	c, err := readManifest(s.contentFile)
	if err != nil {
		return nil, err
	}
	if c.ID != "" && c.ID != id {
		return nil, fmt.Errorf("--content %s: names configuration %q, not %q", s.contentFile, c.ID, id)
	}
	c.ID, c.ETag = id, ""
	c.SystemMetrics = deploy.Metrics{}
	c.Metrics.Results = nil
	fl := cmd.Flags()
	if fl.Changed("target-condition") {
		c.TargetCondition = s.targetCondition
	}
	if strings.TrimSpace(c.TargetCondition) == "" {
		return nil, errors.New(`--target-condition: give the devices to target, for example "tags.environment='prod'" ("*" targets every device)`)
	}
	if fl.Changed("priority") {
		c.Priority = s.priority
	}
	labels, err := keyValues("--labels", s.labels)
	if err != nil {
		return nil, err
	}
	if labels != nil {
		c.Labels = labels
	}
	metrics, err := keyValues("--metrics", s.metrics)
	if err != nil {
		return nil, err
	}
	if metrics != nil {
		c.Metrics.Queries = metrics
	}
	if c.SchemaVersion == "" {
		c.SchemaVersion = deploy.SchemaVersion
	}
	switch kind := c.Kind(); {
	case s.layered && kind == deploy.KindBase:
		return nil, fmt.Errorf(`--layered: the manifest sets the whole "properties.desired" of $edgeAgent, which makes it a base deployment; a layered one sets paths such as "properties.desired.modules.<name>"`)
	case !s.layered && kind == deploy.KindLayered:
		return nil, fmt.Errorf(`the manifest has no whole "properties.desired" for $edgeAgent and $edgeHub, so it is a layered deployment: add --layered (and a priority above the base deployment's), or give the full $edgeAgent and $edgeHub desired properties`)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("--content %s: %w", s.contentFile, err)
	}
	return c, nil
}

func (c *cli) deploymentCreateCmd(h *hubFlag) *cobra.Command {
	var spec deploymentSpec
	cmd := &cobra.Command{
		Use:   "create <id> --content <manifest.json> --target-condition <condition> [flags]",
		Short: "Create a deployment (or device configuration) from a manifest",
		Long: `Create an automatic configuration. --content is an IoT Edge deployment manifest
in Azure's shape ({"modulesContent": {"$edgeAgent": …, "$edgeHub": …, …}}),
{"content": {…}}, or a whole configuration JSON (whose target condition,
priority, labels and metrics the flags override). A layered deployment (one
that sets "properties.desired.<path>" keys instead of whole desired
properties) needs --layered and a priority above its base deployment's.`,
		Example: `  muster deployment create sensors-prod --content deployment.json --target-condition "tags.environment='prod'" --priority 10
  muster deployment create sensors-debug --layered --content layer.json --target-condition "tags.debug=true" --priority 20
  muster deployment create sensors-prod --content deployment.json --target-condition "*" \
      --labels team=ops --metrics running="SELECT deviceId FROM devices.modules WHERE moduleId='$edgeAgent' AND properties.reported.lastDesiredStatus.code = 200"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if spec.contentFile == "" {
				return errors.New("--content: give the deployment manifest file")
			}
			cfg, err := spec.build(cmd, args[0])
			if err != nil {
				return err
			}
			hub, err := c.hubService(h)
			if err != nil {
				return err
			}
			out, err := hub.CreateConfiguration(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			return c.emitDetails(out, deploymentDetails(out))
		},
	}
	f := cmd.Flags()
	f.StringVar(&spec.contentFile, "content", "", "deployment manifest or configuration JSON file")
	f.StringVar(&spec.targetCondition, "target-condition", "", `devices to target, for example "tags.environment='prod'" ("*": every device)`)
	f.IntVar(&spec.priority, "priority", 0, "priority (0 or more; the highest wins on a device)")
	f.StringArrayVar(&spec.labels, "labels", nil, "label name=value (repeatable)")
	f.StringArrayVar(&spec.metrics, "metrics", nil, "custom metric name=query (repeatable); the metric counts the query's rows")
	f.BoolVar(&spec.layered, "layered", false, "the manifest is a layered deployment, merged on top of a base deployment")
	return cmd
}

func (c *cli) deploymentListCmd(h *hubFlag) *cobra.Command {
	var top int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List deployments and configurations with their metrics",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if top < 0 || top > hubservice.MaxListConfigurations {
				return fmt.Errorf("--top %d is not from 0 to %d", top, hubservice.MaxListConfigurations)
			}
			hub, err := c.hubService(h)
			if err != nil {
				return err
			}
			cs, err := hub.ListConfigurations(cmd.Context(), top)
			if err != nil {
				return err
			}
			if cs == nil {
				cs = []*deploy.Configuration{}
			}
			return c.emit(cs, func(w io.Writer) {
				row(w, "ID", "KIND", "PRIORITY", "TARGET CONDITION", "TARGETED", "APPLIED", "REPORTED OK", "REPORTED FAILED", "CREATED")
				for _, d := range cs {
					r := d.SystemMetrics.Results
					row(w, d.ID, kindText(d), strconv.Itoa(d.Priority), d.TargetCondition, metricText(r, deploy.MetricTargeted),
						metricText(r, deploy.MetricApplied), metricText(r, deploy.MetricReportedSuccessful), metricText(r, deploy.MetricReportedFailed),
						timeText(d.CreatedTime))
				}
			})
		},
	}
	cmd.Flags().IntVar(&top, "top", 0, fmt.Sprintf("list at most this many (0: all, at most %d)", hubservice.MaxListConfigurations))
	return cmd
}

func (c *cli) deploymentShowCmd(h *hubFlag) *cobra.Command {
	return &cobra.Command{
		Use:   "show <id>",
		Short: "Show a deployment or configuration with its metrics",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			hub, err := c.hubService(h)
			if err != nil {
				return err
			}
			d, err := hub.GetConfiguration(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return c.emitDetails(d, deploymentDetails(d))
		},
	}
}

func (c *cli) deploymentDeleteCmd(h *hubFlag) *cobra.Command {
	var etag string
	cmd := &cobra.Command{
		Use:   "delete <id>",
		Short: "Delete a deployment or configuration (twins keep what it wrote)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			hub, err := c.hubService(h)
			if err != nil {
				return err
			}
			if err := hub.DeleteConfiguration(cmd.Context(), args[0], etag); err != nil {
				return err
			}
			return c.emit(deleted{Deleted: "configuration", ID: args[0]}, func(w io.Writer) {
				fmt.Fprintf(w, "Deleted configuration %s. Twins keep the desired properties it wrote.\n", args[0])
			})
		},
	}
	cmd.Flags().StringVar(&etag, "etag", "", "delete only if the configuration still has this etag")
	return cmd
}

// kindText names a configuration's kind for tables.
func kindText(d *deploy.Configuration) string {
	switch d.Kind() {
	case deploy.KindBase:
		return "edge (base)"
	case deploy.KindLayered:
		return "edge (layered)"
	case deploy.KindDevice:
		return "device"
	case deploy.KindModule:
		return "module"
	}
	return ""
}

// metricText shows a metric result; "" (shown as "-") when it is absent.
func metricText(results map[string]int64, name string) string {
	n, ok := results[name]
	if !ok {
		return ""
	}
	return strconv.FormatInt(n, 10)
}

// deploymentDetails describes a configuration, its system metrics and its
// custom metrics with their queries.
func deploymentDetails(d *deploy.Configuration) *details {
	out := &details{}
	out.add("ID", d.ID)
	out.add("Kind", kindText(d))
	out.add("Priority", strconv.Itoa(d.Priority))
	out.add("Target condition", d.TargetCondition)
	out.add("Labels", sortedPairs(d.Labels))
	out.add("Created", timeText(d.CreatedTime))
	out.add("Last updated", timeText(d.LastUpdatedTime))
	out.add("ETag", d.ETag)
	if d.IsEdge() {
		out.add("Modules", strings.Join(moduleNames(d), ", "))
	}
	for _, name := range []string{deploy.MetricTargeted, deploy.MetricApplied, deploy.MetricReportedSuccessful, deploy.MetricReportedFailed} {
		out.add(name, metricText(d.SystemMetrics.Results, name))
	}
	for _, name := range sortedKeysOf(d.Metrics.Queries) {
		v := metricText(d.Metrics.Results, name)
		if v == "" {
			v = "?"
		}
		out.add("Metric "+name, v+"  ("+d.Metrics.Queries[name]+")")
	}
	return out
}

// moduleNames lists the modules a deployment's content names.
func moduleNames(d *deploy.Configuration) []string {
	return sortedKeysOf(d.Content.ModulesContent)
}

func sortedKeysOf[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func sortedPairs(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for _, k := range sortedKeysOf(m) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ", ")
}
