{{/* Names, labels and shared snippets. */}}

{{- define "data-explorer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/*
Prefix of every resource name. Kept to 40 characters so "<prefix>-egress-proxy"
and the like stay valid DNS labels (63).
*/}}
{{- define "data-explorer.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "data-explorer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of one component: call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "data-explorer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "data-explorer.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* All common labels of one component: call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "data-explorer.labels" -}}
{{ include "data-explorer.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: data-explorer
helm.sh/chart: {{ include "data-explorer.chart" .ctx }}
{{- end -}}

{{/*
Runner pods are created by the operator (one Job per MaterializationRun), not by
this chart; it labels them app.kubernetes.io/component=runner. The runner
NetworkPolicy, the egress proxy's ingress rule and the Cilium policy select them
by that label.
*/}}
{{- define "data-explorer.runnerSelector" -}}
app.kubernetes.io/component: runner
{{- end -}}

{{- define "data-explorer.operatorName" -}}{{ include "data-explorer.fullname" . }}-operator{{- end -}}
{{- define "data-explorer.gatewayName" -}}{{ include "data-explorer.fullname" . }}-gateway{{- end -}}
{{- define "data-explorer.runnerName" -}}{{ include "data-explorer.fullname" . }}-runner{{- end -}}
{{- define "data-explorer.proxyName" -}}{{ include "data-explorer.fullname" . }}-egress-proxy{{- end -}}

{{/* The one image every role runs, by digest when one is given. */}}
{{- define "data-explorer.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The Secret with DATABASE_URL and DATA_EXPLORER_SECRET_KEY; the chart never creates it. */}}
{{- define "data-explorer.databaseSecret" -}}
{{- required "database.existingSecret is required: the name of an existing Secret in the release namespace with keys DATABASE_URL and DATA_EXPLORER_SECRET_KEY" .Values.database.existingSecret -}}
{{- end -}}

{{/* The egress proxy's pod labels as k=v,k=v (DATA_EXPLORER_EGRESS_PROXY_LABELS). */}}
{{- define "data-explorer.proxyLabelsCsv" -}}
{{- $labels := include "data-explorer.selectorLabels" (dict "ctx" . "component" "egress-proxy") | fromYaml -}}
{{- $pairs := list -}}
{{- range $key := keys $labels | sortAlpha -}}
{{- $pairs = append $pairs (printf "%s=%s" $key (get $labels $key)) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}

{{- define "data-explorer.proxyUrl" -}}
http://{{ include "data-explorer.proxyName" . }}.{{ .Release.Namespace }}.svc:3128
{{- end -}}

{{/* Configuration errors that the schema cannot express. */}}
{{- define "data-explorer.checks" -}}
{{- $_ := include "data-explorer.databaseSecret" . -}}
{{- if and .Values.networkPolicies.enabled (not .Values.database.cidrs) -}}
{{- fail "database.cidrs is required while networkPolicies.enabled: list the CIDRs where PostgreSQL listens (e.g. [10.20.0.5/32])" -}}
{{- end -}}
{{- if and .Values.networkPolicies.enabled (not .Values.egressProxy.enabled) (not .Values.networkPolicies.cilium.enabled) -}}
{{- fail "egressProxy.enabled is false but networkPolicies.cilium.enabled is not set: runners could not reach CommCare. Enable the egress proxy, or the Cilium FQDN policy" -}}
{{- end -}}
{{- if and .Values.gateway.ingress.enabled (not .Values.gateway.ingress.host) -}}
{{- fail "gateway.ingress.host is required when gateway.ingress.enabled" -}}
{{- end -}}
{{- if and .Values.gateway.ingress.tls.enabled (not .Values.gateway.ingress.tls.secretName) -}}
{{- fail "gateway.ingress.tls.secretName is required when gateway.ingress.tls.enabled" -}}
{{- end -}}
{{- end -}}

{{/* Pod-level security: non-root (the image's numeric user), RuntimeDefault seccomp. */}}
{{- define "data-explorer.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "data-explorer.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* DATABASE_URL and DATA_EXPLORER_SECRET_KEY, read from the existing Secret only. */}}
{{- define "data-explorer.databaseEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "data-explorer.databaseSecret" . }}
      key: DATABASE_URL
- name: DATA_EXPLORER_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "data-explorer.databaseSecret" . }}
      key: DATA_EXPLORER_SECRET_KEY
{{- end -}}

{{/* NetworkPolicy egress rule to cluster DNS. */}}
{{- define "data-explorer.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          {{- toYaml .Values.networkPolicies.dns.namespaceSelector | nindent 10 }}
      podSelector:
        matchLabels:
          {{- toYaml .Values.networkPolicies.dns.podSelector | nindent 10 }}
  ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
{{- end -}}

{{/* NetworkPolicy egress rule to PostgreSQL. */}}
{{- define "data-explorer.postgresEgress" -}}
- to:
    {{- range .Values.database.cidrs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  ports:
    - {protocol: TCP, port: {{ .Values.database.port }}}
{{- end -}}

{{/* NetworkPolicy egress rule to the Kubernetes API server. */}}
{{- define "data-explorer.kubernetesApiEgress" -}}
- to:
    {{- range .Values.kubernetesApi.cidrs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  ports:
    {{- range .Values.kubernetesApi.ports }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
{{- end -}}

{{/* Scheduling extras of one component's values: nodeSelector, tolerations, affinity. */}}
{{- define "data-explorer.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
