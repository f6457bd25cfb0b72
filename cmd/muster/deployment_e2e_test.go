package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/client/dpsclient"
	"github.com/muster-iot/muster/internal/deploy"
	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/sas"
)

// e2eManifest is an IoT Edge deployment manifest in Azure's shape.
const e2eManifest = `{"modulesContent":{
  "$edgeAgent":{"properties.desired":{"schemaVersion":"1.1",
    "runtime":{"type":"docker","settings":{"minDockerVersion":"v1.25"}},
    "systemModules":{"edgeAgent":{"type":"docker","settings":{"image":"mcr.microsoft.com/azureiotedge-agent:1.5","createOptions":"{}"}},
      "edgeHub":{"type":"docker","status":"running","restartPolicy":"always","settings":{"image":"mcr.microsoft.com/azureiotedge-hub:1.5","createOptions":"{}"}}},
    "modules":{"SimulatedTemperatureSensor":{"version":"1.0","type":"docker","status":"running","restartPolicy":"always",
      "settings":{"image":"mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:1.5","createOptions":"{}"}}}}},
  "$edgeHub":{"properties.desired":{"schemaVersion":"1.1","routes":{"upstream":"FROM /messages/* INTO $upstream"},
    "storeAndForwardConfiguration":{"timeToLiveSecs":7200}}},
  "SimulatedTemperatureSensor":{"properties.desired":{"SendInterval":5}}}}`

// desiredWithout decodes desired properties without $version.
func desiredWithout(t *testing.T, v any) string {
	t.Helper()
	m, _ := v.(map[string]any)
	out := map[string]any{}
	for k, x := range m {
		if k != "$version" && k != "$metadata" {
			out[k] = x
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitFor re-checks cond until it holds or the deadline passes; the
// deployment engine works asynchronously and the test sees it only
// through the server's APIs.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within a minute", what)
		}
		<-tick.C
	}
}

// TestDeploymentEndToEnd creates an edge deployment with the CLI from a
// deployment manifest, then provisions an IoT Edge device through DPS by
// an enrollment group whose initial twin sets the tag the deployment
// targets: the device's $edgeAgent (connected over MQTTS with its module
// key) gets the deployment's desired properties, the module twins show the
// deployment as Applied, and the metrics count the device, also after a
// restart. Deleting the deployment leaves the twins' desired properties.
func TestDeploymentEndToEnd(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, dir, nil)
	ctx := ctxT(t)
	run := func(args ...string) string {
		t.Helper()
		out, stderr, err := runCLI(t, nil, append([]string{"--data-dir", dir}, args...)...)
		if err != nil {
			t.Fatalf("muster %s: %v\n%s", strings.Join(args, " "), err, stderr)
		}
		return out
	}

	manifest := writeFile(t, dir, "deployment.json", []byte(e2eManifest))
	created := decodeJSON[deploy.Configuration](t, run("deployment", "create", "prod-sensors", "--content", manifest,
		"--target-condition", "tags.environment='prod'", "--priority", "10", "--labels", "team=ops",
		"--metrics", "prod=SELECT deviceId FROM devices WHERE tags.environment = 'prod'", "-o", "json"))
	if created.ID != "prod-sensors" || created.ETag == "" || created.Kind() != deploy.KindBase || created.Labels["team"] != "ops" {
		t.Fatalf("created %+v", created)
	}

	group, err := ts.svc.PutGroup(ctx, &enroll.EnrollmentGroup{EnrollmentGroupID: "edge-prod", Common: enroll.Common{
		Attestation:  &enroll.AttestationMechanism{Type: enroll.AttestationSymmetricKey},
		Capabilities: &enroll.Capabilities{IoTEdge: true},
		InitialTwin:  &enroll.InitialTwin{Tags: json.RawMessage(`{"environment":"prod"}`)},
	}}, "")
	if err != nil {
		t.Fatal(err)
	}
	key, err := sas.DeriveKey(group.Attestation.SymmetricKey.PrimaryKey, "edge-deploy")
	if err != nil {
		t.Fatal(err)
	}
	res := mustRegister(t, ts.client(t, "https"), dpsclient.Device{RegistrationID: "edge-deploy", Credential: dpsclient.Credential{SymmetricKey: key}})
	hubHost := res.AssignedHub

	// The device's edge agent connects with its module key and reads its twin.
	status, agentIdentity := hubAPI(t, ts, http.MethodGet, "/devices/edge-deploy/modules/$edgeAgent", "")
	auth, _ := agentIdentity["authentication"].(map[string]any)
	keys, _ := auth["symmetricKey"].(map[string]any)
	agentKey, _ := keys["primaryKey"].(string)
	if status != http.StatusOK || agentKey == "" {
		t.Fatalf("GET $edgeAgent identity: %d %v", status, agentIdentity)
	}
	agent := connectModule(t, ts, hubHost, "edge-deploy", "$edgeAgent", agentKey)
	agent.subscribe(t, "$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#")
	agent.publish(t, "$iothub/twin/GET/?$rid=1", 0, "")
	msg := agent.next(t)
	var twinDoc struct {
		Desired map[string]any `json:"desired"`
	}
	if msg.Topic() != "$iothub/twin/res/200/?$rid=1" || json.Unmarshal(msg.Payload(), &twinDoc) != nil {
		t.Fatalf("$edgeAgent twin GET: %s %s", msg.Topic(), msg.Payload())
	}
	if _, deployed := twinDoc.Desired["modules"]; !deployed {
		// Not applied yet: the engine's write arrives as a desired notification.
		msg = agent.next(t)
		if !strings.HasPrefix(msg.Topic(), "$iothub/twin/PATCH/properties/desired/") || !strings.Contains(string(msg.Payload()), "SimulatedTemperatureSensor") {
			t.Fatalf("$edgeAgent desired notification: %s %s", msg.Topic(), msg.Payload())
		}
	}

	var want deploy.Configuration
	if err := json.Unmarshal([]byte(`{"content":`+e2eManifest+`}`), &want); err != nil {
		t.Fatal(err)
	}
	wantAgent := desiredWithout(t, decodeAny(t, want.Content.ModulesContent["$edgeAgent"]["properties.desired"]))
	applied := `{"prod-sensors":{"status":"Applied"}}`
	var agentTwin map[string]any
	waitFor(t, "$edgeAgent twin shows the deployment as Applied", func() bool {
		status, agentTwin = hubAPI(t, ts, http.MethodGet, "/twins/edge-deploy/modules/$edgeAgent", "")
		return status == http.StatusOK && jsonEq(t, agentTwin["configurations"], applied)
	})
	props, _ := agentTwin["properties"].(map[string]any)
	if got := desiredWithout(t, props["desired"]); got != wantAgent {
		t.Fatalf("GET /twins/edge-deploy/modules/$edgeAgent desired:\n got %s\nwant %s", got, wantAgent)
	}
	status, hubTwin := hubAPI(t, ts, http.MethodGet, "/twins/edge-deploy/modules/$edgeHub", "")
	props, _ = hubTwin["properties"].(map[string]any)
	if status != http.StatusOK || !strings.Contains(desiredWithout(t, props["desired"]), `"upstream":"FROM /messages/* INTO $upstream"`) {
		t.Fatalf("$edgeHub twin: %d %v", status, hubTwin)
	}

	checkMetrics := func(when string) {
		t.Helper()
		shown := decodeJSON[deploy.Configuration](t, run("deployment", "show", "prod-sensors", "-o", "json"))
		r := shown.SystemMetrics.Results
		if r[deploy.MetricTargeted] != 1 || r[deploy.MetricApplied] != 1 || shown.Metrics.Results["prod"] != 1 {
			t.Fatalf("%s: metrics %+v %+v", when, shown.SystemMetrics, shown.Metrics)
		}
	}
	checkMetrics("after provisioning")
	out := run("deployment", "show", "prod-sensors")
	checkRow(t, out, "Kind", "edge (base)")
	checkRow(t, out, "targetedCount", "1")
	checkRow(t, out, "appliedCount", "1")
	if out := run("deployment", "list"); !strings.Contains(out, "prod-sensors") || !strings.Contains(out, "tags.environment='prod'") {
		t.Fatalf("deployment list:\n%s", out)
	}

	// The deployment and its statuses survive a restart.
	ts.stop()
	ts = startServer(t, dir, nil)
	checkMetrics("after a restart")

	// "configuration" is the same command; deleting leaves the desired properties.
	run("configuration", "delete", "prod-sensors")
	waitFor(t, "$edgeAgent twin drops the deleted deployment's status", func() bool {
		status, agentTwin = hubAPI(t, ts, http.MethodGet, "/twins/edge-deploy/modules/$edgeAgent", "")
		return status == http.StatusOK && agentTwin["configurations"] == nil
	})
	props, _ = agentTwin["properties"].(map[string]any)
	if got := desiredWithout(t, props["desired"]); got != wantAgent {
		t.Fatalf("desired after the deployment was deleted:\n got %s\nwant %s", got, wantAgent)
	}
	if _, stderr, err := runCLI(t, nil, "--data-dir", dir, "deployment", "show", "prod-sensors"); err == nil || !strings.Contains(err.Error(), "ConfigurationNotFound") {
		t.Fatalf("show a deleted deployment: %v %s", err, stderr)
	}
}

func decodeAny(t *testing.T, raw json.RawMessage) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v
}
