package rebuild

import (
	"context"
	"encoding/json"
	"strconv"
)

// NaiveBuild builds both payloads the way the incident's task did: every flag and
// cohort loaded into memory, turned into maps, then marshalled whole. It exists only as
// the benchmark's baseline; its memory grows with the team.
func NaiveBuild(ctx context.Context, src FlagSource, teamID int64) (flagsJSON, defsJSON []byte, err error) {
	rd, err := src.Open(ctx, teamID, ReadOptions{})
	if err != nil {
		return nil, nil, err
	}
	defer rd.Close()
	var flags []map[string]any
	cohortIDs := map[int64]struct{}{}
	{
		err := rd.Flags(ctx, func(f *FlagRow) error {
			var filters map[string]any
			if err := json.Unmarshal(f.Filters, &filters); err != nil {
				return nil
			}
			groups, _ := filters["groups"].([]any)
			for _, g := range groups {
				gm, _ := g.(map[string]any)
				props, _ := gm["properties"].([]any)
				for _, p := range props {
					pm, _ := p.(map[string]any)
					if pm["type"] == "cohort" {
						if v, ok := pm["value"].(float64); ok {
							cohortIDs[int64(v)] = struct{}{}
						}
					}
				}
			}
			flags = append(flags, map[string]any{
				"id": f.ID, "team_id": f.TeamID, "name": f.Name, "key": f.Key, "filters": filters,
				"deleted": false, "active": f.Active, "ensure_experience_continuity": f.EnsureExperienceContinuity,
				"version": f.Version, "evaluation_runtime": f.EvaluationRuntime, "bucketing_identifier": f.BucketingIdentifier,
				"evaluation_contexts": append([]string{}, f.Tags...), "has_experiment": f.HasExperiment,
			})
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
	}
	ids := make([]int64, 0, len(cohortIDs))
	for id := range cohortIDs {
		ids = append(ids, id)
	}
	var cohortList []map[string]any
	cohortProps := map[string]any{}
	if err := rd.Cohorts(ctx, ids, false, func(c *CohortRow) error {
		var filters map[string]any
		_ = json.Unmarshal(c.Filters, &filters)
		cohortList = append(cohortList, map[string]any{"id": c.ID, "name": c.Name, "filters": filters, "team_id": c.TeamID})
		cohortProps[strconv.FormatInt(c.ID, 10)] = filters["properties"]
		return nil
	}); err != nil {
		return nil, nil, err
	}
	groups, err := rd.GroupTypes(ctx)
	if err != nil {
		return nil, nil, err
	}
	gtm := map[string]string{}
	for _, g := range groups {
		gtm[strconv.Itoa(g.Index)] = g.Type
	}
	if flagsJSON, err = json.Marshal(map[string]any{"flags": flags, "cohorts": cohortList, "evaluation_metadata": map[string]any{}}); err != nil {
		return nil, nil, err
	}
	if defsJSON, err = json.Marshal(map[string]any{"flags": flags, "group_type_mapping": gtm, "cohorts": cohortProps}); err != nil {
		return nil, nil, err
	}
	return flagsJSON, defsJSON, nil
}
