package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/muster-iot/muster/internal/client/hubservice"
)

// maxQueryItems bounds --max-items.
const maxQueryItems = 100000

func (c *cli) queryCmd() *cobra.Command {
	var pageSize, maxItems int
	var hf *hubFlag
	cmd := &cobra.Command{
		Use:   "query <query>",
		Short: "Query the hub's device twins (IoT Hub query language)",
		Long: `Run an IoT Hub query over the device twins of the hub through its service
API (POST /devices/query), with a hub connection string
(--hub-connection-string, ` + envHubConnectionString + `, or endpoints.json's
hubConnectionString). Pages are fetched until the last one or --max-items.

  SELECT [TOP n] ( * | expr [AS alias], … | COUNT() [AS alias] )
  FROM devices [WHERE condition] [GROUP BY path]

SELECT * prints twins; projections and aggregates print one column per
property.`,
		Example: `  muster query "SELECT * FROM devices WHERE tags.environment = 'test'"
  muster query "SELECT deviceId, properties.reported.fw AS fw FROM devices WHERE status = 'enabled'"
  muster query "SELECT properties.reported.fw AS fw, COUNT() AS n FROM devices GROUP BY properties.reported.fw" -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if pageSize < 1 || pageSize > hubservice.MaxQueryPageSize {
				return fmt.Errorf("--page-size %d is not from 1 to %d", pageSize, hubservice.MaxQueryPageSize)
			}
			if maxItems < 1 || maxItems > maxQueryItems {
				return fmt.Errorf("--max-items %d is not from 1 to %d", maxItems, maxQueryItems)
			}
			hub, err := c.hubService(hf)
			if err != nil {
				return err
			}
			items := []json.RawMessage{}
			itemType, cont := "", ""
			// Each page brings at least one item or ends the loop, so it
			// runs at most maxItems+1 times.
			for range maxItems + 1 {
				page, err := hub.Query(cmd.Context(), args[0], min(pageSize, maxItems-len(items)), cont)
				if err != nil {
					return err
				}
				itemType = page.ItemType
				items = append(items, page.Items...)
				cont = page.Continuation
				if cont == "" || len(items) >= maxItems || len(page.Items) == 0 {
					break
				}
			}
			if cont != "" {
				c.note("showing the first %d items; more remain (raise --max-items)", len(items))
			}
			if itemType == hubservice.QueryItemTwin {
				return c.emit(items, func(w io.Writer) { twinTable(w, items) })
			}
			return c.emit(items, func(w io.Writer) { rawTable(w, items) })
		},
	}
	hf = addHubFlag(cmd)
	f := cmd.Flags()
	f.IntVar(&pageSize, "page-size", 100, fmt.Sprintf("items per request (1 to %d)", hubservice.MaxQueryPageSize))
	f.IntVar(&maxItems, "max-items", 1000, fmt.Sprintf("stop after this many items (1 to %d)", maxQueryItems))
	return cmd
}

// twinTable prints twins, one per row; module twins (FROM
// devices.modules) get a MODULE ID column.
func twinTable(w io.Writer, items []json.RawMessage) {
	twins := make([]*hubservice.Twin, len(items))
	modules := false
	for i, it := range items {
		var t hubservice.Twin
		if json.Unmarshal(it, &t) == nil {
			twins[i] = &t
			modules = modules || t.ModuleID != ""
		}
	}
	if modules {
		row(w, "DEVICE ID", "MODULE ID", "STATUS", "CONNECTION", "VERSION", "TAGS")
	} else {
		row(w, "DEVICE ID", "STATUS", "CONNECTION", "VERSION", "TAGS")
	}
	for i, t := range twins {
		switch {
		case t == nil:
			row(w, rawText(items[i]))
		case modules:
			row(w, t.DeviceID, t.ModuleID, t.Status, t.ConnectionState, strconv.FormatInt(t.Version, 10), rawText(t.Tags))
		default:
			row(w, t.DeviceID, t.Status, t.ConnectionState, strconv.FormatInt(t.Version, 10), rawText(t.Tags))
		}
	}
}

// rawTable prints projection or aggregate items with one column per
// property, in the order the properties first appear (the SELECT order); a
// property an item lacks (undefined) prints as "-".
func rawTable(w io.Writer, items []json.RawMessage) {
	var cols []string
	seen := map[string]bool{}
	rows := make([]map[string]json.RawMessage, len(items))
	for i, it := range items {
		keys, values, err := objectMembers(it)
		if err != nil {
			keys, values = []string{"value"}, map[string]json.RawMessage{"value": it}
		}
		rows[i] = values
		for _, k := range keys {
			if !seen[k] {
				seen[k] = true
				cols = append(cols, k)
			}
		}
	}
	if len(cols) == 0 {
		return
	}
	header := make([]string, len(cols))
	copy(header, cols)
	row(w, header...)
	for _, r := range rows {
		cells := make([]string, len(cols))
		for i, k := range cols {
			cells[i] = cellText(r[k])
		}
		row(w, cells...)
	}
}

// objectMembers returns the member names of a JSON object in document
// order and the members by name.
func objectMembers(raw json.RawMessage) ([]string, map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, errors.New("not a JSON object")
	}
	var keys []string
	values := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		k, ok := tok.(string)
		if !ok {
			return nil, nil, fmt.Errorf("object member name is %T", tok)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, err
		}
		if _, dup := values[k]; !dup {
			keys = append(keys, k)
		}
		values[k] = v
	}
	return keys, values, nil
}

// cellText shows a JSON value in a table cell: strings without quotes,
// other values as compact JSON, a missing (undefined) value as "".
func cellText(raw json.RawMessage) string {
	if string(bytes.TrimSpace(raw)) == "null" {
		return "null"
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return rawText(raw)
}
