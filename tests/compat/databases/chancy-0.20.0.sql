-- A database made and filled by Chancy 0.20.0 with tests/compat/databases/record.py.
--
-- PostgreSQL database dump
--


-- Dumped from database version 15.20 (Debian 15.20-0+deb12u1)
-- Dumped by pg_dump version 15.20 (Debian 15.20-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: chancy_cron; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.chancy_cron (
    unique_key text NOT NULL,
    job json NOT NULL,
    cron text NOT NULL,
    last_run timestamp with time zone,
    next_run timestamp with time zone NOT NULL
);


--
-- Name: chancy_jobs; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.chancy_jobs (
    id uuid NOT NULL,
    queue text NOT NULL,
    func text NOT NULL,
    kwargs json DEFAULT '{}'::json NOT NULL,
    limits json DEFAULT '[]'::json NOT NULL,
    meta json DEFAULT '{}'::json NOT NULL,
    state character varying(25) DEFAULT 'pending'::character varying NOT NULL,
    priority integer DEFAULT 0,
    attempts integer DEFAULT 0,
    max_attempts integer DEFAULT 1 NOT NULL,
    taken_by text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    started_at timestamp with time zone,
    completed_at timestamp with time zone,
    scheduled_at timestamp with time zone DEFAULT now() NOT NULL,
    unique_key text,
    errors json DEFAULT '[]'::json NOT NULL
);


--
-- Name: chancy_leader; Type: TABLE; Schema: public; Owner: -
--

CREATE UNLOGGED TABLE public.chancy_leader (
    id bigint NOT NULL,
    worker_id text NOT NULL,
    first_seen timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL
);


--
-- Name: chancy_leader_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE UNLOGGED SEQUENCE public.chancy_leader_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: chancy_leader_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.chancy_leader_id_seq OWNED BY public.chancy_leader.id;


--
-- Name: chancy_metrics; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.chancy_metrics (
    metric_key character varying(255) NOT NULL,
    resolution character varying(10) NOT NULL,
    worker_id character varying(255) NOT NULL,
    timestamps timestamp with time zone[] NOT NULL,
    "values" jsonb[] NOT NULL,
    metric_type character varying(20) NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    metadata jsonb DEFAULT '{}'::jsonb NOT NULL
);


--
-- Name: chancy_queue_rate_limits; Type: TABLE; Schema: public; Owner: -
--

CREATE UNLOGGED TABLE public.chancy_queue_rate_limits (
    queue character varying(255) NOT NULL,
    window_start integer NOT NULL,
    count integer DEFAULT 0 NOT NULL
);


--
-- Name: chancy_queues; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.chancy_queues (
    name text NOT NULL,
    state text DEFAULT 'active'::text NOT NULL,
    concurrency integer DEFAULT 1,
    tags text[],
    executor text DEFAULT 'chancy.executors.process.ProcessExecutor'::text NOT NULL,
    executor_options json,
    polling_interval integer DEFAULT 1,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    rate_limit integer,
    rate_limit_window integer
);


--
-- Name: chancy_schema_version; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.chancy_schema_version (
    version_of character varying(255) NOT NULL,
    version integer
);


--
-- Name: chancy_workers; Type: TABLE; Schema: public; Owner: -
--

CREATE UNLOGGED TABLE public.chancy_workers (
    worker_id text NOT NULL,
    tags text[],
    queues text[],
    last_seen timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL
);


--
-- Name: chancy_workflow_steps; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.chancy_workflow_steps (
    id integer NOT NULL,
    workflow_id uuid,
    step_id text NOT NULL,
    job_data json NOT NULL,
    dependencies json NOT NULL,
    job_id uuid,
    created_at timestamp with time zone DEFAULT now(),
    updated_at timestamp with time zone DEFAULT now()
);


--
-- Name: chancy_workflow_steps_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.chancy_workflow_steps_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: chancy_workflow_steps_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.chancy_workflow_steps_id_seq OWNED BY public.chancy_workflow_steps.id;


--
-- Name: chancy_workflows; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.chancy_workflows (
    id uuid NOT NULL,
    name text NOT NULL,
    state text NOT NULL,
    created_at timestamp with time zone DEFAULT now(),
    updated_at timestamp with time zone DEFAULT now()
);


--
-- Name: chancy_leader id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_leader ALTER COLUMN id SET DEFAULT nextval('public.chancy_leader_id_seq'::regclass);


--
-- Name: chancy_workflow_steps id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_workflow_steps ALTER COLUMN id SET DEFAULT nextval('public.chancy_workflow_steps_id_seq'::regclass);


--
-- Data for Name: chancy_cron; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.chancy_cron (unique_key, job, cron, last_run, next_run) FROM stdin;
compat-cron	{"f": "tests.compat.fixture_jobs.tick", "k": {"label": "cron"}, "p": 0, "a": 1, "s": 1796419232.018065, "l": [], "u": "compat-cron", "q": "compat_later", "m": {}}	0 0 1 1 *	\N	2027-01-01 00:00:00+00
\.


--
-- Data for Name: chancy_jobs; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.chancy_jobs (id, queue, func, kwargs, limits, meta, state, priority, attempts, max_attempts, taken_by, created_at, started_at, completed_at, scheduled_at, unique_key, errors) FROM stdin;
03fd2567-339b-13b7-9ee0-da336aa66fbe	compat_now	tests.compat.fixture_jobs.fail	{"label": "failed"}	[]	{}	failed	0	1	1	b14e7ca3-0ee8-45c2-b3e3-757b3ba8cc4e	2026-12-04 21:20:27.495349+00	2026-12-04 21:20:27.550294+00	2026-12-04 21:20:27.57389+00	2026-12-04 21:20:27.495152+00	\N	[{"traceback": "Traceback (most recent call last):\\n  File \\"/root/.pyenv/versions/3.11.7/lib/python3.11/concurrent/futures/thread.py\\", line 58, in run\\n    result = self.fn(*self.args, **self.kwargs)\\n             ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\\n  File \\"/work/venvs/chancy-0.20.0/lib/python3.11/site-packages/chancy/executors/thread.py\\", line 89, in job_wrapper\\n    result = func(**kwargs)\\n             ^^^^^^^^^^^^^^\\n  File \\"/work/wt/dbcompat/tests/compat/fixture_jobs.py\\", line 20, in fail\\n    raise RuntimeError(f\\"fixture job failed on purpose ({kwargs})\\")\\nRuntimeError: fixture job failed on purpose ({'label': 'failed'})\\n", "attempt": 0}]
03fd2567-3370-8597-b81f-0a472619acfc	compat_now	tests.compat.fixture_jobs.echo	{"n": 0, "label": "done"}	[]	{}	succeeded	0	1	1	b14e7ca3-0ee8-45c2-b3e3-757b3ba8cc4e	2026-12-04 21:20:27.478043+00	2026-12-04 21:20:27.550294+00	2026-12-04 21:20:27.590887+00	2026-12-04 21:20:27.477674+00	\N	[]
03fd2567-3eb5-3ca7-8fd0-39f26a5f8724	compat_now	tests.compat.fixture_jobs.step	{"name": "fetch", "label": "fetch"}	[]	{}	succeeded	0	1	1	b14e7ca3-0ee8-45c2-b3e3-757b3ba8cc4e	2026-12-04 21:20:28.659482+00	2026-12-04 21:20:29.659685+00	2026-12-04 21:20:29.668632+00	2026-12-04 21:20:27.503362+00	\N	[]
03fd2567-521d-2a87-8da9-054993588481	compat_later	tests.compat.fixture_jobs.step	{"name": "index", "label": "index"}	[]	{}	pending	0	0	1	\N	2026-12-04 21:20:30.695765+00	\N	\N	2026-12-04 21:20:27.503383+00	\N	[]
03fd2567-5234-67e7-9f95-33f1d2bab079	compat_later	tests.compat.fixture_jobs.step	{"name": "parse", "label": "parse"}	[]	{}	pending	0	0	1	\N	2026-12-04 21:20:30.703884+00	\N	\N	2026-12-04 21:20:27.503379+00	\N	[]
03fd2567-5dfb-77d7-b321-886a42c6f6c8	compat_later	tests.compat.fixture_jobs.echo	{"n": 1, "text": "h\\u00e9llo w\\u00f6rld", "nested": {"a": [1, 2, {"b": null}]}, "label": "waiting-1"}	[]	{}	pending	5	0	3	\N	2026-12-04 21:20:31.938847+00	\N	\N	2026-12-04 21:20:31.938669+00	compat-unique	[]
03fd2567-5e18-9ac7-9940-bb8859292beb	compat_later	tests.compat.fixture_jobs.echo	{"n": 2, "label": "waiting-2"}	[{"t": "time", "v": 60}]	{}	pending	-2	0	1	\N	2026-12-04 21:20:31.950833+00	\N	\N	2026-12-04 21:20:31.950593+00	\N	[]
03fd2567-5e24-01b7-bca6-78064c47aa50	default	tests.compat.fixture_jobs.echo	{"n": 3, "label": "waiting-3"}	[]	{"recorded_by": "0.20.0"}	pending	10	0	1	\N	2026-12-04 21:20:31.957445+00	\N	\N	2026-12-04 21:20:31.955275+00	\N	[]
03fd2567-5e4c-fae7-b3e6-d570d4c41a9b	compat_later	tests.compat.fixture_jobs.echo	{"n": 4, "label": "future-1"}	[]	{}	pending	0	0	1	\N	2026-12-04 21:20:31.972683+00	\N	\N	2100-01-01 00:00:00+00	compat-future	[]
03fd2567-5e94-25f7-b550-4b0d9a192bbd	default	tests.compat.fixture_jobs.echo	{"n": 5, "label": "future-2"}	[]	{}	pending	1	0	1	\N	2026-12-04 21:20:32.001786+00	\N	\N	2099-06-01 12:30:00+00	\N	[]
\.


--
-- Data for Name: chancy_leader; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.chancy_leader (id, worker_id, first_seen, expires_at) FROM stdin;
1	b14e7ca3-0ee8-45c2-b3e3-757b3ba8cc4e	2026-12-04 21:20:28.622984+00	2026-12-04 21:20:35.658222+00
\.


--
-- Data for Name: chancy_metrics; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.chancy_metrics (metric_key, resolution, worker_id, timestamps, "values", metric_type, updated_at, metadata) FROM stdin;
\.


--
-- Data for Name: chancy_queue_rate_limits; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.chancy_queue_rate_limits (queue, window_start, count) FROM stdin;
\.


--
-- Data for Name: chancy_queues; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.chancy_queues (name, state, concurrency, tags, executor, executor_options, polling_interval, created_at, rate_limit, rate_limit_window) FROM stdin;
compat_now	active	2	{.*}	chancy.executors.thread.ThreadedExecutor	{}	1	2026-12-04 21:20:27.443401+00	\N	\N
compat_later	paused	3	{.*}	chancy.executors.thread.ThreadedExecutor	{}	2	2026-12-04 21:20:27.456435+00	100	60
default	active	\N	{.*}	chancy.executors.process.ProcessExecutor	{}	1	2026-12-04 21:20:27.561921+00	\N	\N
\.


--
-- Data for Name: chancy_schema_version; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.chancy_schema_version (version_of, version) FROM stdin;
chancy	3
metrics	1
workflow	1
cron	1
\.


--
-- Data for Name: chancy_workers; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.chancy_workers (worker_id, tags, queues, last_seen, expires_at) FROM stdin;
b14e7ca3-0ee8-45c2-b3e3-757b3ba8cc4e	{python=3.11.7,*,hostname=vm,arch=x86_64,worker_id=b14e7ca3-0ee8-45c2-b3e3-757b3ba8cc4e,os=Linux}	{}	2026-12-04 21:20:27.536748+00	2026-12-04 21:21:57.536748+00
\.


--
-- Data for Name: chancy_workflow_steps; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.chancy_workflow_steps (id, workflow_id, step_id, job_data, dependencies, job_id, created_at, updated_at) FROM stdin;
2	03fd2567-33ae-cde7-b0c0-82dbd6bf2e9d	parse	{"f": "tests.compat.fixture_jobs.step", "k": {"name": "parse", "label": "parse"}, "p": 0, "a": 1, "s": 1796419227.503379, "l": [], "u": null, "q": "compat_later", "m": {}}	["fetch"]	03fd2567-5234-67e7-9f95-33f1d2bab079	2026-12-04 21:20:27.503575+00	2026-12-04 21:20:31.645797+00
4	03fd2567-33ae-cde7-b0c0-82dbd6bf2e9d	store	{"f": "tests.compat.fixture_jobs.step", "k": {"name": "store", "label": "store"}, "p": 0, "a": 1, "s": 1796419227.503389, "l": [], "u": null, "q": "compat_later", "m": {}}	["parse", "index"]	\N	2026-12-04 21:20:27.503575+00	2026-12-04 21:20:31.645797+00
3	03fd2567-33ae-cde7-b0c0-82dbd6bf2e9d	index	{"f": "tests.compat.fixture_jobs.step", "k": {"name": "index", "label": "index"}, "p": 0, "a": 1, "s": 1796419227.503383, "l": [], "u": null, "q": "compat_later", "m": {}}	["fetch"]	03fd2567-521d-2a87-8da9-054993588481	2026-12-04 21:20:27.503575+00	2026-12-04 21:20:31.645797+00
1	03fd2567-33ae-cde7-b0c0-82dbd6bf2e9d	fetch	{"f": "tests.compat.fixture_jobs.step", "k": {"name": "fetch", "label": "fetch"}, "p": 0, "a": 1, "s": 1796419227.503362, "l": [], "u": null, "q": "compat_now", "m": {}}	[]	03fd2567-3eb5-3ca7-8fd0-39f26a5f8724	2026-12-04 21:20:27.503575+00	2026-12-04 21:20:31.645797+00
\.


--
-- Data for Name: chancy_workflows; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.chancy_workflows (id, name, state, created_at, updated_at) FROM stdin;
03fd2567-33ae-cde7-b0c0-82dbd6bf2e9d	compat-workflow	pending	2026-12-04 21:20:27.503575+00	2026-12-04 21:20:31.645797+00
\.


--
-- Name: chancy_leader_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.chancy_leader_id_seq', 1, false);


--
-- Name: chancy_workflow_steps_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.chancy_workflow_steps_id_seq', 636, true);


--
-- Name: chancy_cron chancy_cron_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_cron
    ADD CONSTRAINT chancy_cron_pkey PRIMARY KEY (unique_key);


--
-- Name: chancy_jobs chancy_jobs_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_jobs
    ADD CONSTRAINT chancy_jobs_pkey PRIMARY KEY (id);


--
-- Name: chancy_leader chancy_leader_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_leader
    ADD CONSTRAINT chancy_leader_pkey PRIMARY KEY (id);


--
-- Name: chancy_metrics chancy_metrics_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_metrics
    ADD CONSTRAINT chancy_metrics_pkey PRIMARY KEY (metric_key, resolution, worker_id);


--
-- Name: chancy_queue_rate_limits chancy_queue_rate_limits_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_queue_rate_limits
    ADD CONSTRAINT chancy_queue_rate_limits_pkey PRIMARY KEY (queue);


--
-- Name: chancy_queues chancy_queues_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_queues
    ADD CONSTRAINT chancy_queues_pkey PRIMARY KEY (name);


--
-- Name: chancy_schema_version chancy_schema_version_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_schema_version
    ADD CONSTRAINT chancy_schema_version_pkey PRIMARY KEY (version_of);


--
-- Name: chancy_workers chancy_workers_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_workers
    ADD CONSTRAINT chancy_workers_pkey PRIMARY KEY (worker_id);


--
-- Name: chancy_workflow_steps chancy_workflow_steps_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_workflow_steps
    ADD CONSTRAINT chancy_workflow_steps_pkey PRIMARY KEY (id);


--
-- Name: chancy_workflows chancy_workflows_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_workflows
    ADD CONSTRAINT chancy_workflows_pkey PRIMARY KEY (id);


--
-- Name: chancy_leader leader_worker_id_unique; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_leader
    ADD CONSTRAINT leader_worker_id_unique UNIQUE (worker_id);


--
-- Name: chancy_idx_jobs_fetch_prune; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX chancy_idx_jobs_fetch_prune ON public.chancy_jobs USING btree (queue, state, attempts, scheduled_at, priority DESC, id DESC) WHERE ((state)::text = ANY ((ARRAY['pending'::character varying, 'retrying'::character varying])::text[]));


--
-- Name: chancy_idx_jobs_queue_state; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX chancy_idx_jobs_queue_state ON public.chancy_jobs USING btree (queue, state);


--
-- Name: chancy_jobs_unique_key; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX chancy_jobs_unique_key ON public.chancy_jobs USING btree (unique_key) WHERE ((unique_key IS NOT NULL) AND ((state)::text <> ALL ((ARRAY['succeeded'::character varying, 'failed'::character varying])::text[])));


--
-- Name: chancy_metrics_updated_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX chancy_metrics_updated_idx ON public.chancy_metrics USING btree (updated_at);


--
-- Name: chancy_workflow_steps_workflow_id_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX chancy_workflow_steps_workflow_id_idx ON public.chancy_workflow_steps USING btree (workflow_id);


--
-- Name: chancy_workflows_state_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX chancy_workflows_state_idx ON public.chancy_workflows USING btree (state);


--
-- Name: chancy_workflows_steps_unique_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX chancy_workflows_steps_unique_idx ON public.chancy_workflow_steps USING btree (workflow_id, step_id);


--
-- Name: chancy_workflow_steps chancy_workflow_steps_workflow_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_workflow_steps
    ADD CONSTRAINT chancy_workflow_steps_workflow_id_fkey FOREIGN KEY (workflow_id) REFERENCES public.chancy_workflows(id) ON DELETE CASCADE;


--
-- PostgreSQL database dump complete
--


