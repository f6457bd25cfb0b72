package deploy

import "strings"

// System metric names (systemMetrics.results and systemMetrics.queries).
const (
	MetricTargeted           = "targetedCount"
	MetricApplied            = "appliedCount"
	MetricReportedSuccessful = "reportedSuccessfulCount"
	MetricReportedFailed     = "reportedFailedCount"
)

// SystemQueries returns the system metric queries of a configuration, the
// strings Azure shows for them (hub-edge-protocol.md §4.6):
//
//   - edge deployments (base and layered): targetedCount, appliedCount,
//     reportedSuccessfulCount and reportedFailedCount, the last three over
//     the $edgeAgent module twin;
//   - deviceContent: targetedCount and appliedCount over device twins;
//   - moduleContent: targetedCount and appliedCount over module twins.
//
// A targetCondition of "*" adds no condition. The ADM strings are modelled
// on the edge ones (the spec quotes only those). A configuration without
// content has no system metrics (nil).
func SystemQueries(c *Configuration) map[string]string {
	applied := "configurations.[[" + c.ID + "]].status = 'Applied'"
	cond := c.Condition()
	all := cond == "*" || cond == ""
	switch c.Kind() {
	case KindBase, KindLayered:
		targeted := "SELECT deviceId FROM devices WHERE capabilities.iotEdge = true"
		if !all {
			targeted += " AND (" + cond + ")"
		}
		edgeApplied := "SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' AND " + applied
		current := " AND properties.desired.$version = properties.reported.lastDesiredVersion AND properties.reported.lastDesiredStatus.code "
		return map[string]string{
			MetricTargeted:           targeted,
			MetricApplied:            edgeApplied,
			MetricReportedSuccessful: edgeApplied + current + "= 200",
			MetricReportedFailed:     edgeApplied + current + "!= 200",
		}
	case KindDevice:
		return map[string]string{
			MetricTargeted: where("SELECT deviceId FROM devices", cond, all),
			MetricApplied:  "SELECT deviceId FROM devices WHERE " + applied,
		}
	case KindModule:
		return map[string]string{
			MetricTargeted: where("SELECT deviceId, moduleId FROM devices.modules", cond, all),
			MetricApplied:  "SELECT deviceId, moduleId FROM devices.modules WHERE " + applied,
		}
	default:
		return nil
	}
}

func where(sel, cond string, all bool) string {
	if all || strings.TrimSpace(cond) == "" {
		return sel
	}
	return sel + " WHERE " + cond
}
