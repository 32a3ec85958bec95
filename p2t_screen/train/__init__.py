"""Training and evaluation: configs, labelled data, optimiser steps, fit, pre-training, eval."""
