{{- define "portvakt.labels" -}}
app.kubernetes.io/name: portvakt
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}
