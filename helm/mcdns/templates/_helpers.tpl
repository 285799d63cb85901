{{/* Chart name, shortened to the 63 characters a label allows. */}}
{{- define "mcdns.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full resource name: <release>-<chart>, or the release alone when it holds the chart name. */}}
{{- define "mcdns.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Selector labels: stable for the life of the release. */}}
{{- define "mcdns.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mcdns.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "mcdns.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "mcdns.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: dns
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The ServiceAccount the pods run as. */}}
{{- define "mcdns.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mcdns.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Name of the cluster-scoped objects (ClusterRole, ClusterRoleBinding): the release's
namespace is part of it, so the same release name in two namespaces does not collide. */}}
{{- define "mcdns.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "mcdns.fullname" .) | trunc 253 | trimSuffix "-" }}
{{- end }}

{{/* Values that cannot work together fail the render, with what to change. */}}
{{- define "mcdns.checks" -}}
{{- $lameduck := float64 (default 5 .Values.config.lameduck) }}
{{- if ge $lameduck (float64 .Values.terminationGracePeriodSeconds) }}
{{- fail (printf "config.lameduck (%vs) must be shorter than terminationGracePeriodSeconds (%vs): Kubernetes would kill mcdns while it still answers. Lower config.lameduck or raise terminationGracePeriodSeconds." .Values.config.lameduck .Values.terminationGracePeriodSeconds) }}
{{- end }}
{{- if and .Values.hpa.enabled (lt (int .Values.hpa.maxReplicas) (int .Values.hpa.minReplicas)) }}
{{- fail "hpa.maxReplicas must be at least hpa.minReplicas." }}
{{- end }}
{{- end }}

{{/* mcdns.yaml: .Values.config plus the listen addresses the chart owns. */}}
{{- define "mcdns.configFile" -}}
{{- if and (eq (default "stub" .Values.config.role) "stub") .Values.config.namespaces }}
{{- fail "config.namespaces is for role resolver only: behind CoreDNS (role stub) mcdns gets every namespace's names, and those of namespaces it does not watch would be NXDOMAIN. Leave config.namespaces empty, or set config.role=resolver." }}
{{- end }}
{{- $cfg := deepCopy .Values.config }}
{{- $_ := set $cfg "listen" (list (printf "0.0.0.0:%d" (int .Values.containerPorts.dns))) }}
{{- $_ = set $cfg "http" (printf "0.0.0.0:%d" (int .Values.containerPorts.http)) }}
{{- toYaml $cfg }}
{{- end }}
