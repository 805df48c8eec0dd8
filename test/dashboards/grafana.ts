/*
 * grafana.ts: the type every dashboards/*.json must satisfy, made of Grafana's
 * own types from the npm package @grafana/schema (pinned in package.json):
 *
 *   - the dashboard model: raw/dashboard/x/types.gen.d.ts (Dashboard, Panel,
 *     RowPanel, VariableModel, FieldConfig, ...), exactly: every field must be
 *     one Grafana declares, required fields are required;
 *   - each panel's options and custom field config, by panel type:
 *     raw/composable/<type>/panelcfg/x/types.gen.d.ts (Options, FieldConfig).
 *     These may be partial at any depth (Grafana fills in defaults) but may
 *     not hold a field the panel does not declare.
 *
 * check.sh writes each dashboard as an object literal typed Board, so that
 * TypeScript's excess-property check runs on every nested object and string
 * values are checked against Grafana's enums. A panel type missing from
 * KnownPanel fails: add it here with its panelcfg types.
 *
 * Where the schema does not describe what Grafana stores:
 *   - string enums (FieldColorModeId, ThresholdsMode, MappingType, ...) are
 *     declared as TypeScript enums; JSON holds their values, so Json<> turns
 *     each into the union of its values;
 *   - AnnotationQuery.target is typed as the built-in Grafana annotation's
 *     target (the schema's own TODO says it should be a query); a data source
 *     annotation stores that data source's query there, as panel targets do,
 *     and panel targets are Record<string, unknown> in the schema too;
 *   - __requires, the export envelope Grafana's importer reads, is not part
 *     of the model.
 */
import type * as D from '@grafana/schema/dist/esm/raw/dashboard/x/Dashboard_types.gen';
import type * as BarChart from '@grafana/schema/dist/esm/raw/composable/barchart/panelcfg/x/BarChartPanelCfg_types.gen';
import type * as BarGauge from '@grafana/schema/dist/esm/raw/composable/bargauge/panelcfg/x/BarGaugePanelCfg_types.gen';
import type * as Gauge from '@grafana/schema/dist/esm/raw/composable/gauge/panelcfg/x/GaugePanelCfg_types.gen';
import type * as Geomap from '@grafana/schema/dist/esm/raw/composable/geomap/panelcfg/x/GeomapPanelCfg_types.gen';
import type * as PieChart from '@grafana/schema/dist/esm/raw/composable/piechart/panelcfg/x/PieChartPanelCfg_types.gen';
import type * as Stat from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type * as Table from '@grafana/schema/dist/esm/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen';
import type * as Text from '@grafana/schema/dist/esm/raw/composable/text/panelcfg/x/TextPanelCfg_types.gen';
import type * as TimeSeries from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';

/* T as JSON holds it: string enums as their values; every field as declared. */
type Json<T> = T extends string ? `${T}`
  : T extends number | boolean | null | undefined ? T
  : T extends ReadonlyArray<infer U> ? Array<Json<U>>
  : T extends object ? { [K in keyof T]: Json<T[K]> }
  : T;

/* The same, every field optional at any depth (panel options: Grafana's defaults fill in). */
type Loose<T> = T extends string ? `${T}`
  : T extends number | boolean | null | undefined ? T
  : T extends ReadonlyArray<infer U> ? Array<Loose<U>>
  : T extends object ? { [K in keyof T]?: Loose<T[K]> }
  : T;

type FieldConfigSource<Custom> = Omit<Json<D.FieldConfigSource>, 'defaults'> & {
  defaults: Omit<Json<D.FieldConfig>, 'custom'> & { custom?: Loose<Custom> };
};

type PanelOf<Type extends string, Options, Custom> =
  Omit<Json<D.Panel>, 'type' | 'options' | 'fieldConfig'> & {
    type: Type;
    options?: Loose<Options>;
    fieldConfig?: FieldConfigSource<Custom>;
  };

/* No custom field config: the panel declares none. */
type None = Record<never, never>;

export type KnownPanel =
  | PanelOf<'barchart', BarChart.Options, BarChart.FieldConfig>
  | PanelOf<'bargauge', BarGauge.Options, None>
  | PanelOf<'gauge', Gauge.Options, None>
  | PanelOf<'geomap', Geomap.Options, None>
  | PanelOf<'piechart', PieChart.Options, PieChart.FieldConfig>
  | PanelOf<'stat', Stat.Options, None>
  | PanelOf<'table', Table.Options, Table.FieldConfig>
  | PanelOf<'text', Text.Options, None>
  | PanelOf<'timeseries', TimeSeries.Options, TimeSeries.FieldConfig>;

type Row = Omit<Json<D.RowPanel>, 'panels'> & { panels: Array<KnownPanel> };

type Annotation = Omit<Json<D.AnnotationQuery>, 'target'> & {
  target?: Json<D.AnnotationTarget> | Record<string, unknown>;
};

export type Board = Omit<Json<D.Dashboard>, 'panels' | 'annotations'> & {
  panels?: Array<KnownPanel | Row>;
  annotations?: { list?: Array<Annotation> };
  __requires?: Array<{ type: 'grafana' | 'datasource' | 'panel'; id: string; name: string; version: string }>;
};
