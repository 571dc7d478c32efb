/* stripe_idem--1.1--1.2.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION stripe_idem UPDATE TO '1.2'" to load this file. \quit
